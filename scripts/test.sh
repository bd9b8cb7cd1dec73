#!/usr/bin/env bash
# One command for a fresh machine: set everything up, then run all tests
# (cargo test and pytest, both against real redis-server processes they start).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
PYTHON=.venv/bin/python

# The Rust test binaries link libpython; use the one of this interpreter.
LD_LIBRARY_PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH

echo "== lint"
cargo fmt --check
cargo clippy --quiet --all-targets -- -D warnings
"$PYTHON" -m ruff check --quiet python tests_py bench
"$PYTHON" -m ruff format --check --quiet python tests_py bench
"$PYTHON" -m mypy

echo "== cargo test"
cargo test --quiet

echo "== pytest"
"$PYTHON" -m pytest tests_py -q -p no:cacheprovider "$@"

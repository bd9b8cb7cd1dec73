#!/usr/bin/env bash
# Prepares a fresh Debian machine for this project: redis-server (Debian package), a
# project virtual environment in .venv/ with the Python packages the tests and the demo
# use, and the package itself, built from source by maturin into that environment.
# Nothing outside this clone changes except the Debian package. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "== installing redis-server (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
# Debian starts a service on 6379 when it installs redis; the tests never use it.

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip() { "$PY" -m pip --disable-pip-version-check -q "$@"; }

echo "== installing Python packages into $VENV"
pip install --upgrade pip
# nano-graphrag's own requirements pull heavy optional stacks (dspy-ai, ...); it runs
# with the lighter set of requirements-dev.txt, so it is installed without its own.
pip install --no-deps "nano-graphrag==0.0.8.2"
pip install -r requirements-dev.txt

echo "== building the wheel (release)"
rm -rf target/wheels
"$PY" -m maturin build --release --quiet -o target/wheels
pip install --force-reinstall --no-deps target/wheels/*.whl

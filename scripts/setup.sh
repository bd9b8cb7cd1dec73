#!/usr/bin/env bash
# Prepares a fresh Debian machine for this project: redis-server (Debian package),
# the Python packages the tests and the demo use, and the package itself, built
# from source by maturin and installed into the current Python. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v redis-server >/dev/null 2>&1; then
    echo "== installing redis-server (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
# Debian starts a service on 6379 when it installs redis; the tests never use it.

echo "== installing Python packages"
pip() { "$PYTHON" -m pip --disable-pip-version-check -q "$@"; }
# nano-graphrag's own requirements pull heavy optional stacks (dspy-ai, ...);
# it runs with the light set below (see ../shared/design/nano-graphrag.md).
pip install --no-deps "nano-graphrag==0.0.8.2"
pip install -r requirements-dev.txt

echo "== building the wheel (release)"
rm -rf dist
"$PYTHON" -m maturin build --release --quiet -o dist
pip install --force-reinstall --no-deps dist/*.whl

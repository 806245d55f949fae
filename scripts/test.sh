#!/usr/bin/env bash
# Runs every test (unit, integration against the simulator, doc tests), then the lints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace
bash scripts/python-test.sh # the Python module's tests (python/tests)
bash scripts/slurm/test-slurm.sh # shards as a Slurm array job + dependent layers job, on a real single-node cluster
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet -p mlyexport -p mlysim

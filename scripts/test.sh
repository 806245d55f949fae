#!/usr/bin/env bash
# Runs every test (unit, integration against the simulator, doc tests), then the lints.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A throwaway PostgreSQL 15 + PostGIS 3 for tests/it/postgis.rs (about 3 s), stopped on exit.
pg_env=$(bash scripts/pg-up.sh) # fails the script when the cluster cannot start
eval "$pg_env"
trap 'bash scripts/pg-down.sh "$MLYEXPORT_TEST_PGDIR"' EXIT
export MLYEXPORT_TEST_PG MLYEXPORT_TEST_PGPASSWORD
cargo test --workspace
bash scripts/python-test.sh # the Python module's tests (python/tests)
bash scripts/slurm/test-slurm.sh # shards as a Slurm array job + dependent layers job, on a real single-node cluster
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet -p mlyexport -p mlysim

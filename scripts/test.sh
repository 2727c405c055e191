#!/usr/bin/env bash
# Runs every test of tarn: the Rust unit and integration tests (the store conformance suite
# against SQLite and PostgreSQL included) and the compatibility suite that drives a live
# `tarn server` with the stock mlflow client, on both backends.
# Sets up what a fresh machine lacks: PostgreSQL and Redis servers and a Python venv with pinned
# packages.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
pg_url="${TARN_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TARN_TEST_POSTGRES_URL="$pg_url"

step() { printf '\n==> %s\n' "$*"; }

# Property tests draw their cases from this seed, so a failure here repeats on every run and
# every machine; set PROPTEST_RNG_SEED to explore other cases.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261207}"

step "PostgreSQL at 127.0.0.1:5432"
"$root/scripts/ensure-postgres.sh"

step "Redis at 127.0.0.1:6379"
"$root/scripts/ensure-redis.sh"

step "Python venv for the compatibility suite"
venv="$("$root/scripts/ensure-venv.sh")"
echo "venv: $venv"
# Evidently, which monitors' drift values are checked against, needs pandas 2: its own venv.
evidently_venv="$("$root/scripts/ensure-venv.sh" "$root/tests/compat/requirements-evidently.txt")"
export TARN_EVIDENTLY_PYTHON="$evidently_venv/bin/python"
echo "Evidently venv: $evidently_venv"

step "cargo build"
cargo build --workspace --all-targets

step "cargo test (unit, in-process HTTP, store conformance on SQLite and PostgreSQL)"
cargo test --workspace --no-fail-fast

step "compatibility suite: stock mlflow client against tarn server on SQLite"
TARN_BIN="$target_dir/debug/tarn" "$venv/bin/python" -m pytest tests/compat -q -p no:cacheprovider

step "compatibility suite: stock mlflow client against tarn server on PostgreSQL"
TARN_BIN="$target_dir/debug/tarn" TARN_TEST_DATABASE_URL="${pg_url%/*}/tarn_compat_$$" \
  "$venv/bin/python" -m pytest tests/compat -q -p no:cacheprovider

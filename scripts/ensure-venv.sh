#!/usr/bin/env bash
# Creates (once per requirements file content) a Python venv outside the clone so later runs
# reuse it, and prints its path: the compatibility suite's and the benchmarks' by default
# (tests/compat/requirements.txt), or the one for the requirements file given (Evidently's).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="${1:-$root/tests/compat/requirements.txt}"
hash="$(sha256sum "$requirements" | cut -c1-16)"
if [ $# -eq 0 ]; then
  venv="${TARN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tarn/venv-$hash}"
else
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/tarn/venv-$hash"
fi
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  touch "$venv/.complete"
fi
echo "$venv"

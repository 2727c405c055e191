#!/usr/bin/env bash
# Creates (once per requirements file content) the Python venv the compatibility suite and the
# benchmark use, outside the clone so later runs reuse it. Prints its path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$root/tests/compat/requirements.txt"
hash="$(sha256sum "$requirements" | cut -c1-16)"
venv="${TARN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tarn/venv-$hash}"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  touch "$venv/.complete"
fi
echo "$venv"

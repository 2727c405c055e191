#!/usr/bin/env bash
# Creates, once, the virtual environments of the orchestrators bench/jobs.py compares tarn's job
# runner with: Apache Airflow 3 and Prefect 3 from PyPI, each pinned, each in its own venv
# outside the clone (they do not share dependencies well with each other or with the test
# venv). Idempotent: a venv is rebuilt only when missing, unfinished or made for another pin.
#
#   bench/setup-orchestrators.sh            # both
#   bench/setup-orchestrators.sh airflow    # one of them
#
# Prints "<name> <venv path>" per venv. Airflow's constraint files live on GitHub, which this
# machine does not reach, so the pin is resolved by pip alone (it resolves cleanly for
# 3.3.2 on Python 3.11).
set -euo pipefail

AIRFLOW_VERSION=3.3.2
PREFECT_VERSION=3.9.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tarn"
python="${ORCHESTRATORS_PYTHON:-python3}"

make_venv() {
  local name="$1" pin="$2" venv="$cache/$1-venv"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.complete" 2>/dev/null)" = "$pin" ]; then
    echo "$name $venv"
    return
  fi
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "$pin" >&2
  echo "$pin" >"$venv/.complete"
  echo "$name $venv"
}

wanted="${*:-airflow prefect}"
for name in $wanted; do
  case "$name" in
    airflow) make_venv airflow "apache-airflow==$AIRFLOW_VERSION" ;;
    prefect) make_venv prefect "prefect==$PREFECT_VERSION" ;;
    *) echo "unknown orchestrator: $name (airflow, prefect)" >&2; exit 2 ;;
  esac
done

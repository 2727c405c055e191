#!/usr/bin/env bash
# Makes sure a Redis server answers at 127.0.0.1:6379 (the online store's tests use it),
# installing it from Debian's packages when the machine has none.
set -euo pipefail
ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if command -v redis-cli >/dev/null && ready; then echo "Redis is running"; exit 0; fi
if ! command -v redis-server >/dev/null; then
  echo "installing Redis from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server >/dev/null
fi
# A test server: nothing kept on disk.
redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no >/dev/null
for _ in $(seq 1 30); do
  if ready; then echo "Redis is running"; exit 0; fi
  sleep 1
done
echo "Redis did not come up at 127.0.0.1:6379" >&2
exit 1

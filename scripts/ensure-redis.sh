#!/usr/bin/env bash
# Make a Redis server reachable at 127.0.0.1:6379 for the full local Bluesky network (the
# AppView's cache): use the running one, else install Debian's redis-server and start it.
set -euo pipefail

reachable() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect(("127.0.0.1", 6379)); s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

reachable && exit 0
echo "Redis is not reachable on 127.0.0.1:6379: starting one" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v redis-server >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >/dev/null
for _ in $(seq 1 30); do reachable && exit 0; sleep 1; done
echo "Redis did not start" >&2; exit 1

#!/usr/bin/env bash
# The full local Bluesky network (tests/support/network.py) runs a Redis of its own for the
# AppView (two networks on one Redis would take each other's events): make sure the
# redis-server binary is installed (Debian's package), nothing more.
set -euo pipefail

command -v redis-server >/dev/null && exit 0
echo "redis-server is not installed: installing Debian's redis-server package" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
command -v redis-server >/dev/null

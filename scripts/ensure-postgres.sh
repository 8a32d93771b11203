#!/usr/bin/env bash
# Make a PostgreSQL server reachable at 127.0.0.1:5432 (user postgres, trust) for the tests:
# use the running one, else start the installed cluster, else install one from Debian.
set -euo pipefail

reachable() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect(("127.0.0.1", 5432)); sys.exit(0)
except OSError:
    sys.exit(1)
PY
}

wait_ready() { for _ in $(seq 1 30); do reachable && return 0; sleep 1; done; return 1; }

reachable && exit 0
echo "PostgreSQL is not reachable on 127.0.0.1:5432: starting one" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
hba=/etc/postgresql/$version/main/pg_hba.conf
# tests connect as postgres over TCP on loopback without a password
if ! grep -q "skypost-tests" "$hba"; then
  printf '# skypost-tests\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' | $SUDO sh -c "cat - $hba > $hba.new && mv $hba.new $hba"
fi
$SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || $SUDO pg_ctlcluster "$version" main restart
wait_ready

#!/usr/bin/env bash
# Make Debian's Chromium available at /usr/bin/chromium for the browser tests.
# Idempotent: does nothing when it is already installed. Playwright drives this
# binary directly; `playwright install` (a download of its own browser) is never used.
set -euo pipefail

[ -x /usr/bin/chromium ] && exit 0
echo "Chromium is not installed: installing Debian's chromium package" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
[ -x /usr/bin/chromium ]

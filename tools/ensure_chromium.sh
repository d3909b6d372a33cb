#!/usr/bin/env bash
# Make sure Debian's chromium exists at /usr/bin/chromium (the browser tests drive it through Playwright).
# Idempotent: silent and instant when it is already installed.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0

PKGS=(chromium fonts-liberation fonts-dejavu-core)
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing ($CHROMIUM). Install it as root:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${PKGS[*]}" >&2
  exit 1
fi

echo "==> installing chromium (Debian package)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
[ -x "$CHROMIUM" ] || { echo "ERROR: $CHROMIUM still missing after install" >&2; exit 1; }

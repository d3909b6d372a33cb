#!/usr/bin/env bash
# Make sure the Debian packages the test suite drives are installed:
#   chromium    /usr/bin/chromium     the browser tests (Playwright with Debian's build)
#   prometheus  /usr/bin/prometheus   the Prometheus extractor tests (a real server on loopback)
#   poppler-utils  /usr/bin/pdfinfo   the review-pack tests (pdfinfo, pdftoppm read the printed PDFs)
#   redis-server   /usr/bin/redis-server   every stack: Superset's cache, the Celery executor's broker
#   php-cli        /usr/bin/php   the Zabbix connector's test against the real Zabbix API (Debian's
#                  zabbix-frontend-php served by `php -S`; tests/test_zabbix_real.py fetches that package's
#                  files with `apt-get download`, installing nothing)
# Idempotent: silent and instant when everything is there. Installs as root; otherwise says what to run.
# Never starts a service: the tests start their own prometheus, and the stack its own redis-server, on
# 127.0.0.1 with a throw-away data dir.
set -euo pipefail

declare -A BINARY=([chromium]=/usr/bin/chromium [prometheus]=/usr/bin/prometheus [poppler-utils]=/usr/bin/pdfinfo
                   [redis-server]=/usr/bin/redis-server [php-cli]=/usr/bin/php)
declare -A EXTRA=([chromium]="fonts-liberation fonts-dejavu-core" [prometheus]="" [poppler-utils]="" [redis-server]=""
                  [php-cli]="php-pgsql php-bcmath php-mbstring php-gd php-xml")

WANTED=("$@")
[ ${#WANTED[@]} -gt 0 ] || WANTED=(chromium prometheus poppler-utils redis-server php-cli)

PKGS=()
for name in "${WANTED[@]}"; do
  [ -n "${BINARY[$name]+x}" ] || { echo "ERROR: unknown package '$name' (known: ${!BINARY[*]})" >&2; exit 2; }
  [ -x "${BINARY[$name]}" ] && continue
  # shellcheck disable=SC2206
  PKGS+=("$name" ${EXTRA[$name]})
done
[ ${#PKGS[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian package(s) for the tests: ${PKGS[*]}. Install them as root:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${PKGS[*]}" >&2
  exit 1
fi

echo "==> installing ${PKGS[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
# Debian's prometheus (every interface) and redis-server (port 6379) packages would start a server: forbid service starts
# for the duration of the install (unless the machine already has a policy, e.g. in containers).
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  trap 'rm -f "$POLICY"' EXIT
fi
APT=(apt-get -o DPkg::Lock::Timeout=300)  # another install may hold the lock: wait for it
"${APT[@]}" update -qq
"${APT[@]}" install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
for name in "${WANTED[@]}"; do
  [ -x "${BINARY[$name]}" ] || { echo "ERROR: ${BINARY[$name]} still missing after install" >&2; exit 1; }
done

#!/usr/bin/env bash
# Kept for existing callers: chromium alone. tools/ensure_system_packages.sh does the work.
exec bash "$(dirname "$0")/ensure_system_packages.sh" chromium

#!/usr/bin/env bash
# Build the environments from their lock files, atomically and one build at a time.
#
#   tools/build_env.sh [NAME...]            default: uv airflow dbt superset pg
#   tools/build_env.sh --status [NAME...]   one line per environment: NAME ok|stale|missing (no build, no lock)
#
# Each environment is built into a temporary folder beside its final place (.venvs/.build-NAME-XXXX),
# checked, then moved into place: an interrupted build leaves the old environment (or none), never a
# half-filled one. Concurrent runs wait for each other on a lock (flock on .venvs/.lock).
#
# The marker .venvs/NAME/.built is written only after the environment's interpreter ran envs/NAME/check.py
# (which imports the environment's main packages). It records the lock file's sha256, the number of
# installed distributions and the files check.py printed; every run compares them (milliseconds, no
# imports) and rebuilds an environment whose marker is missing, stale or contradicted: a folder without a
# marker, or a marker whose packages are gone, is rebuilt, not trusted.
#
# Overrides (the tests use them on scratch folders): SLM_VENVS (default <repo>/.venvs), SLM_ENVS_DIR
# (default <repo>/envs), PY (the interpreter environments are made from, default python3).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="${SLM_VENVS:-$REPO/.venvs}"
ENVS_DIR="${SLM_ENVS_DIR:-$REPO/envs}"
PY="${PY:-python3}"
UV_VERSION="${UV_VERSION:-0.13.9}"
export UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy
# SLM_UV: an existing uv binary to use instead of bootstrapping one into VENVS/uv (the tests).
UV="${SLM_UV:-$VENVS/uv/bin/uv}"

say() { echo "$*" >&2; }
die() { echo "ERROR: $*" >&2; exit 1; }

sha() { sha256sum "$1" | cut -d' ' -f1; }
dist_count() { find "$1"/lib/python3*/site-packages -maxdepth 1 -name '*.dist-info' 2>/dev/null | wc -l; }

# The marker's promise still holds: same lock, same check, same number of distributions, the checked files
# exist. With "any-check", a marker written by an older check.py passes too (see build_env).
marker_valid() {
  local name=$1 dir="$VENVS/$1" marker="$VENVS/$1/.built" line
  [ -s "$marker" ] && [ -x "$dir/bin/python" ] || return 1
  grep -qx "lock $(sha "$ENVS_DIR/$name/requirements.lock")" "$marker" || return 1
  [ "${2:-}" = any-check ] || grep -qx "check $(sha "$ENVS_DIR/$name/check.py")" "$marker" || return 1
  grep -qx "dists $(dist_count "$dir")" "$marker" || return 1
  while read -r line; do
    [ -e "$dir/${line#file }" ] || return 1
  done < <(grep '^file ' "$marker")
}

# Run check.py with the environment's interpreter; on success print the marker's content.
check_env() {
  local name=$1 dir=$2 scratch
  scratch="$(mktemp -d)"
  # Importing airflow writes a default config into AIRFLOW_HOME: keep that out of the user's home.
  if ! (cd "$scratch" && AIRFLOW_HOME="$scratch" PYTHONDONTWRITEBYTECODE=1 \
      "$dir/bin/python" "$ENVS_DIR/$name/check.py" "$scratch/files" >"$scratch/out" 2>&1); then
    say "the $name environment's interpreter cannot import its packages:"
    tail -5 "$scratch/out" >&2
    rm -rf "$scratch"
    return 1
  fi
  echo "lock $(sha "$ENVS_DIR/$name/requirements.lock")"
  echo "check $(sha "$ENVS_DIR/$name/check.py")"
  echo "dists $(dist_count "$dir")"
  sed 's/^/file /' "$scratch/files"
  rm -rf "$scratch"
}

build_uv() {
  [ -n "${SLM_UV:-}" ] && return 0
  [ -x "$UV" ] && "$UV" --version 2>/dev/null | grep -q " $UV_VERSION" && return 0
  command -v "$PY" >/dev/null || die "$PY (Python 3.11) is required"
  say "==> bootstrapping uv $UV_VERSION"
  local tmp
  tmp="$(mktemp -d "$VENVS/.build-uv-XXXX")" && chmod 755 "$tmp"
  # uv is a static binary: the bootstrap venv only carries it, so moving the folder is safe.
  "$PY" -m venv "$tmp" || { rm -rf "$tmp"; die "$PY -m venv failed (Debian/Ubuntu: apt-get install python3-venv)"; }
  "$tmp/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION" || { rm -rf "$tmp"; die "could not install uv $UV_VERSION from PyPI"; }
  "$tmp/bin/uv" --version >/dev/null
  swap_in uv "$tmp"
}

# Replace VENVS/NAME by the complete folder TMP; the old one is removed only after the rename.
swap_in() {
  local name=$1 tmp=$2 old=""
  if [ -e "$VENVS/$name" ] || [ -L "$VENVS/$name" ]; then
    old="$(mktemp -d "$VENVS/.old-$name-XXXX")"
    mv "$VENVS/$name" "$old/"
  fi
  mv "$tmp" "$VENVS/$name"
  [ -z "$old" ] || rm -rf "$old"
}

build_env() {
  local name=$1 lock="$ENVS_DIR/$1/requirements.lock" tmp marker
  [ -f "$lock" ] || die "no lock file $lock"
  [ -f "$ENVS_DIR/$name/check.py" ] || die "no check $ENVS_DIR/$name/check.py"
  marker_valid "$name" && return 0
  # Installed from the same lock, only the check is new (check.py changed, or a marker from before markers
  # had content and is not older than the lock: the old rule): run the check on the installed environment
  # instead of rebuilding it, and rebuild only if it fails.
  if marker_valid "$name" any-check || { [ -f "$VENVS/$name/.built" ] && [ ! -s "$VENVS/$name/.built" ] \
      && [ ! "$lock" -nt "$VENVS/$name/.built" ]; }; then
    if marker="$(check_env "$name" "$VENVS/$name" 2>/dev/null)"; then
      printf '%s\n' "$marker" >"$VENVS/$name/.built.tmp" && mv "$VENVS/$name/.built.tmp" "$VENVS/$name/.built"
      return 0
    fi
  fi
  if [ -d "$VENVS/$name" ]; then
    say "==> rebuilding the $name environment (its marker is missing or does not match what is installed)"
  else
    say "==> building the $name environment (from ${lock#"$REPO"/})"
  fi
  # 755: when run as root, the cluster's unprivileged user runs the pg environment's binaries.
  tmp="$(mktemp -d "$VENVS/.build-$name-XXXX")" && chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  # Relocatable: scripts find their interpreter relative to themselves, so the folder can be renamed.
  "$UV" venv -q --relocatable --python "$PY" --allow-existing "$tmp"
  "$UV" pip sync -q --python "$tmp/bin/python" "$lock"
  if [ "$name" = airflow ]; then "$UV" pip install -q --python "$tmp/bin/python" --no-deps -e "$REPO"; fi
  marker="$(check_env "$name" "$tmp")" || die "the $name environment built from $lock does not work (see above)"
  printf '%s\n' "$marker" >"$tmp/.built"
  swap_in "$name" "$tmp"
  trap - EXIT
}

if [ "${1:-}" = --status ]; then
  # Read-only, for ./slm doctor: what a build would do, without waiting for the lock or importing anything.
  shift
  NAMES=("$@")
  [ ${#NAMES[@]} -gt 0 ] || NAMES=(uv airflow dbt superset pg)
  for name in "${NAMES[@]}"; do
    if [ "$name" = uv ]; then
      if [ -x "$UV" ] && "$UV" --version 2>/dev/null | grep -q " $UV_VERSION"; then echo "uv ok"
      elif [ -e "$VENVS/uv" ]; then echo "uv stale"; else echo "uv missing"; fi
    elif marker_valid "$name"; then echo "$name ok"
    elif [ -e "$VENVS/$name" ]; then echo "$name stale"
    else echo "$name missing"; fi
  done
  exit 0
fi

mkdir -p "$VENVS"
VENVS="$(cd "$VENVS" && pwd)"  # absolute: the checks run from a scratch folder
UV="${SLM_UV:-$VENVS/uv/bin/uv}"
command -v flock >/dev/null || die "flock is required (Debian/Ubuntu: apt-get install util-linux)"
exec 9>"$VENVS/.lock"
if ! flock -n 9; then
  say "==> another build of the environments is running: waiting for it"
  flock 9
fi
# Leftovers of interrupted builds (we hold the lock: nobody is using them).
rm -rf "$VENVS"/.build-* "$VENVS"/.old-*

NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(uv airflow dbt superset pg)
build_uv
for name in "${NAMES[@]}"; do
  [ "$name" = uv ] || build_env "$name"
done

# shellcheck shell=bash
# Shared by scripts/demo.sh and scripts/test.sh: install what is missing on a fresh machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DBSTASH_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# apt_ensure CMD_OR_PATH PACKAGE... : install PACKAGEs when CMD_OR_PATH is missing (root only).
apt_ensure() {
  local probe="$1"; shift
  if command -v "$probe" >/dev/null 2>&1 || compgen -G "$probe" >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing $probe and cannot apt-get install $* (not root or no apt): install it yourself"
    return 1
  fi
  if [ -z "${_APT_UPDATED:-}" ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# venv_ensure EXTRAS : a virtualenv with dbstash installed editable with EXTRAS (e.g. rclone or dev).
venv_ensure() {
  local extras="$1" stamp="$VENV/.dbstash-$1"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV" 2>/dev/null || { apt_ensure /usr/lib/python3*/venv python3-venv && "$PYTHON" -m venv "$VENV"; }
  fi
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    log "installing dbstash[$extras] into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$extras]"
    touch "$stamp"
  fi
}

# airflow_ensure : Airflow in its own virtualenv (.cache/airflow-venv; its pins are not the project's),
# with dbstash installed editable, for tests/integration/test_airflow.py.
AIRFLOW_VERSION="${AIRFLOW_VERSION:-3.3.2}"
airflow_ensure() {
  local venv="$ROOT/.cache/airflow-venv" stamp="$ROOT/.cache/airflow-venv/.dbstash-airflow-$AIRFLOW_VERSION"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$ROOT/pyproject.toml" ]; then
    return 0
  fi
  log "installing apache-airflow==$AIRFLOW_VERSION into $venv"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "apache-airflow==$AIRFLOW_VERSION" -e "$ROOT"
  touch "$stamp"
}

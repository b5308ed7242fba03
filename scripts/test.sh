#!/usr/bin/env bash
# Everything a fresh machine needs, then lint, type-check and the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
source "$(dirname "$0")/lib.sh"

apt_ensure sqlite3 sqlite3
apt_ensure '/usr/lib/postgresql/*/bin/initdb' postgresql
apt_ensure mariadbd mariadb-server mariadb-client
apt_ensure redis-server redis-server redis-tools
apt_ensure age age
"$(dirname "$0")/go-peers.sh"
venv_ensure dev
airflow_ensure

cd "$ROOT"
log "ruff"
"$VENV/bin/ruff" check src tests bench examples containers scripts
"$VENV/bin/ruff" format --check src tests bench examples containers scripts
log "mypy --strict"
"$VENV/bin/mypy"
log "container images (podman)"
# builds what this machine can build from containers/ for the smoke suite (tests/containers); where no
# container engine can run, it records why and that suite skips with the reason
"$(dirname "$0")/images.sh"
log "pytest"
# -ra prints the reason of every skip; exit 5 (no test ran) is a failure like any other non-zero.
exec "$VENV/bin/python" -m pytest -ra -p no:cacheprovider "$@"

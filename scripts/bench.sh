#!/usr/bin/env bash
# Benchmarks (not tests): dbstash vs `pg_dump | rclone rcat` vs the temp-file way. See docs/benchmarks.md.
source "$(dirname "$0")/lib.sh"
apt_ensure '/usr/lib/postgresql/*/bin/initdb' postgresql
venv_ensure dev
exec "$VENV/bin/python" "$ROOT/bench/bench_pg.py" "$@"

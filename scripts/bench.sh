#!/usr/bin/env bash
# Benchmarks (not tests), each against the raw shell pipeline in the same run. See docs/benchmarks.md.
#   scripts/bench.sh            PostgreSQL (bench_pg.py) then MariaDB and Redis (bench_engines.py)
#   scripts/bench.sh pg|engines|s3|fixed|big|age|ab|fanout  only one of them; further arguments go to that script
source "$(dirname "$0")/lib.sh"
apt_ensure '/usr/lib/postgresql/*/bin/initdb' postgresql
apt_ensure mariadbd mariadb-server mariadb-client
apt_ensure redis-server redis-server redis-tools
apt_ensure zstd zstd
apt_ensure age age
venv_ensure dev
which="${1:-all}"
[ $# -gt 0 ] && shift
case "$which" in
  pg) exec "$VENV/bin/python" "$ROOT/bench/bench_pg.py" "$@" ;;
  engines) exec "$VENV/bin/python" "$ROOT/bench/bench_engines.py" "$@" ;;
  s3) exec "$VENV/bin/python" "$ROOT/bench/bench_s3.py" "$@" ;;
  fixed) exec "$VENV/bin/python" "$ROOT/bench/bench_fixed.py" "$@" ;;
  big) exec "$VENV/bin/python" "$ROOT/bench/bench_big.py" "$@" ;;
  age) exec "$VENV/bin/python" "$ROOT/bench/bench_encrypt.py" "$@" ;;
  ab) exec "$VENV/bin/python" "$ROOT/bench/bench_ab.py" "$@" ;;
  fanout) exec "$VENV/bin/python" "$ROOT/bench/bench_fanout.py" "$@" ;;
  all) "$VENV/bin/python" "$ROOT/bench/bench_pg.py" && exec "$VENV/bin/python" "$ROOT/bench/bench_engines.py" ;;
  *) echo "usage: scripts/bench.sh [pg|engines|s3|fixed|big|age|ab|fanout|all] [args...]" >&2; exit 2 ;;
esac

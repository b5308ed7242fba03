"""A big stream into S3: time linear in the size, dbstash's memory flat, the chunk size chosen to fit.

One PostgreSQL table grown in steps (about 1 GB, then about 10 GB of dump by default), each size
backed up into ``rclone serve s3`` (its objects on the local disk, not tmpfs: 10 GB) by the raw
``pg_dump | rclone rcat`` and by ``dbstash backup``, interleaved. Reported per size: seconds, seconds
per GB, the dbstash/raw ratio, dbstash's peak RSS (VmHWM of the dbstash process; rclone's own
buffers are rclone's) and the chunk size dbstash chose (from its log).

    python bench/bench_big.py --sizes-gb 1,10 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import PgServer, S3Server, debian_pg_bindir  # noqa: E402

from bench.bench_pg import DBSTASH, RCLONE, VENV_BIN, save_results, timed, watch  # noqa: E402

#: One row: an id and 1000 bytes of hex (incompressible enough; no compression is asked for anyway).
ROW_SQL = "SELECT g, repeat(md5(g::text), 31) || left(md5((g + 1)::text), 8) FROM generate_series({a}, {b}) g"
ROW_BYTES = 1000


def grow(server: PgServer, rows_now: int, rows_wanted: int) -> None:
    """Insert rows until the table holds *rows_wanted* (in batches: one transaction per million rows)."""
    step = 1_000_000
    for a in range(rows_now + 1, rows_wanted + 1, step):
        b = min(a + step - 1, rows_wanted)
        server.psql(f"INSERT INTO big {ROW_SQL.format(a=a, b=b)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-gb", default="1,10", help="dump sizes to measure, in GB (ascending)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each variant per size")
    parser.add_argument("--dir", default=None, help="where the server and the S3 objects live (default: a temp dir)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes_gb.split(",")]
    bindir = debian_pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found (make test installs them)")
    work = Path(tempfile.mkdtemp(prefix="dbstash-bench-big-", dir=args.dir))
    s3 = S3Server.start(RCLONE, str(work / "s3"))
    conf = work / "rclone.conf"
    conf.write_text(s3.config)
    server = PgServer.start(bindir)
    results: list[dict[str, Any]] = []
    try:
        # unlogged: no WAL while filling (pg_dump still dumps its rows)
        server.psql("CREATE UNLOGGED TABLE big (id bigint, payload text)")
        rows = 0
        pg_dump = os.path.join(bindir, "pg_dump")
        folder = "big"
        objects = Path(s3.root) / s3.bucket / folder
        base_env = {**server.env(), "RCLONE_CONFIG": str(conf)}
        raw_cmd = f"{pg_dump} --no-password --format=plain | {RCLONE} rcat {s3.remote(folder)}/raw.sql"
        db_env = {
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/root"),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            "DB_URI": server.uri(),
            "RCLONE_REMOTE": s3.remote(folder),
            "RCLONE_CONFIG_FILE": str(conf),
            "BACKUP_NAME_TEMPLATE": "{db}-{uuid}",
        }
        for gb in sizes:
            wanted = int(gb * 1e9 / ROW_BYTES)
            t0 = time.perf_counter()
            grow(server, rows, wanted)
            rows = wanted
            db_size = int(server.psql("SELECT pg_database_size('app')"))
            filled = time.perf_counter() - t0
            print(f"{gb:g} GB: {rows} rows, database {db_size / 1e9:.2f} GB (filled in {filled:.0f}s)")
            times: dict[str, list[float]] = {"raw": [], "dbstash": []}
            hwm: list[int] = []
            chunk = ""
            dump_bytes = 0
            for i in range(args.rounds):
                order = ["raw", "dbstash"] if i % 2 == 0 else ["dbstash", "raw"]
                for variant in order:
                    if variant == "raw":
                        t, _ = timed(["bash", "-o", "pipefail", "-c", raw_cmd], base_env)
                        dump_bytes = (objects / "raw.sql").stat().st_size
                    else:
                        t, kb, chunk = run_dbstash(db_env)
                        hwm.append(kb)
                    times[variant].append(t)
                    for f in objects.glob("*"):
                        f.unlink()
                print(f"  round {i + 1}: raw {times['raw'][-1]:.1f}s, dbstash {times['dbstash'][-1]:.1f}s")
            med = {k: statistics.median(v) for k, v in times.items()}
            results.append(
                {
                    "target_gb": gb,
                    "database_bytes": db_size,
                    "dump_bytes": dump_bytes,
                    "median_seconds": med,
                    "seconds_per_gb": {k: v / (dump_bytes / 1e9) for k, v in med.items()} if dump_bytes else {},
                    "ratio_dbstash_vs_raw": med["dbstash"] / med["raw"],
                    "dbstash_peak_rss_mb": max(hwm) / 1024,
                    "chunk": chunk,
                }
            )
    finally:
        server.destroy()
        s3.proc.terminate()
        s3.proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    path = save_results(args.out, "big", results)
    print("\n| dump | raw pipe | dbstash | s/GB raw | s/GB dbstash | dbstash/raw | dbstash peak RSS | chunk chosen |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        m, per = r["median_seconds"], r["seconds_per_gb"]
        print(
            f"| {r['dump_bytes'] / 1e9:.2f} GB | {m['raw']:.1f}s | {m['dbstash']:.1f}s | {per.get('raw', 0):.2f} "
            f"| {per.get('dbstash', 0):.2f} | {r['ratio_dbstash_vs_raw']:.3f}x | {r['dbstash_peak_rss_mb']:.1f} MB "
            f"| {r['chunk']} |"
        )
    print(f"raw results: {path}", file=sys.stderr)


def run_dbstash(env: dict[str, str]) -> tuple[float, int, str]:
    """``dbstash backup``: seconds, peak RSS (KiB) of the dbstash process, and the chunk size its log states."""
    stats: dict[str, int] = {}
    done = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen([DBSTASH, "backup"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher = threading.Thread(target=watch, args=(proc.pid, stats, done))
    watcher.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - t0
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"dbstash failed: {err.decode()[-2000:]}")
    m = re.search(r"streaming with (?:a chunk size of ([^:]+)|rclone's default chunk size)", err.decode())
    chunk = (m.group(1) or "rclone's default") if m else "?"
    return elapsed, stats.get("hwm_kb", 0), chunk


if __name__ == "__main__":
    main()

"""age encryption: dbstash with BACKUP_ENCRYPT=age against ``pg_dump | age -r KEY | rclone rcat``, same rounds.

A pgbench database into a local folder on tmpfs; interleaved rounds of four variants (the raw pipe
with and without age, dbstash with and without age); medians and ratios, never absolute targets.

    python bench/bench_encrypt.py --scale 70 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import PgServer, debian_pg_bindir  # noqa: E402

from bench.bench_pg import DBSTASH, RCLONE, VENV_BIN, save_results, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 = ~1 GB database)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    bindir = debian_pg_bindir()
    age = shutil.which("age")
    if bindir is None or age is None:
        sys.exit("PostgreSQL binaries or age not found (make test installs them)")
    work = Path(tempfile.mkdtemp(prefix="dbstash-bench-age-"))
    remote = Path(tempfile.mkdtemp(prefix="dbstash-bench-age-remote-", dir="/dev/shm"))
    key = work / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(
        ["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True
    ).stdout.strip()
    server = PgServer.start(bindir)
    try:
        subprocess.run(
            [os.path.join(bindir, "pgbench"), "-i", "-q", "-s", str(args.scale), "--no-vacuum"],
            env=server.env(),
            check=True,
            capture_output=True,
        )
        db_size = int(server.psql("SELECT pg_database_size('app')"))
        pg_dump = os.path.join(bindir, "pg_dump")
        base_env = {**server.env(), "RCLONE_CONFIG": "/dev/null"}
        db_env = {
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/root"),
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warn",
            "DB_URI": server.uri(),
            "RCLONE_REMOTE": str(remote),
            "BACKUP_NAME_TEMPLATE": "{db}-{uuid}",
        }
        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "raw": (
                ["bash", "-o", "pipefail", "-c", f"{pg_dump} --no-password | {RCLONE} rcat {remote}/raw.sql"],
                base_env,
            ),
            "raw_age": (
                [
                    "bash",
                    "-o",
                    "pipefail",
                    "-c",
                    f"{pg_dump} --no-password | {age} -r {recipient} | {RCLONE} rcat {remote}/raw.sql.age",
                ],
                base_env,
            ),
            "dbstash": ([DBSTASH, "backup"], db_env),
            "dbstash_age": ([DBSTASH, "backup"], {**db_env, "BACKUP_ENCRYPT": "age", "AGE_RECIPIENTS": recipient}),
        }
        for argv, env in variants.values():  # warm-up
            timed(argv, env)
        times: dict[str, list[float]] = {v: [] for v in variants}
        for i in range(args.rounds):
            order = list(variants) if i % 2 == 0 else list(reversed(variants))
            for name in order:
                argv, env = variants[name]
                times[name].append(timed(argv, env)[0])
                for f in remote.iterdir():
                    f.unlink()
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {
            "scale": args.scale,
            "database_bytes": db_size,
            "rounds": args.rounds,
            "median_seconds": med,
            "ratio_dbstash_vs_raw": med["dbstash"] / med["raw"],
            "ratio_dbstash_age_vs_raw_age": med["dbstash_age"] / med["raw_age"],
            "ratio_raw_age_vs_raw": med["raw_age"] / med["raw"],
        }
    finally:
        server.destroy()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(remote, ignore_errors=True)
    path = save_results(args.out, "encrypt", result)
    print("| database | raw pipe | raw + age | dbstash | dbstash + age | dbstash/raw | dbstash age/raw age | age/raw |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {db_size / 1e6:.0f} MB | {med['raw']:.2f}s | {med['raw_age']:.2f}s | {med['dbstash']:.2f}s "
        f"| {med['dbstash_age']:.2f}s | {result['ratio_dbstash_vs_raw']:.3f}x "
        f"| {result['ratio_dbstash_age_vs_raw_age']:.3f}x | {result['ratio_raw_age_vs_raw']:.3f}x |"
    )
    print(f"raw results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

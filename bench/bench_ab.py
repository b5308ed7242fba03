"""A change's before and after in one interleaved run: dbstash from two source trees and the raw pipe.

``rclone serve s3`` on loopback (objects on /dev/shm), or with ``--local`` a plain folder on
/dev/shm; one pgbench database; each round runs the raw ``pg_dump | rclone rcat``, dbstash from the
*before* tree and dbstash from this tree, alternating the order; medians and ratios to the raw pipe
of the same rounds.

    git worktree add /tmp/before <commit>
    python bench/bench_ab.py --before /tmp/before/src --scale 50 --rounds 5
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

from tests.support.servers import PgServer, S3Server, debian_pg_bindir  # noqa: E402

from bench.bench_pg import DBSTASH, RCLONE, dbstash_env, save_results, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the src/ folder of the tree to compare with")
    parser.add_argument("--scale", type=int, default=50, help="pgbench scale (50 = ~0.5 GB dump)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--template", default="{db}-{uuid}", help="BACKUP_NAME_TEMPLATE ({db}-{date}-{time} adds the claim on S3)"
    )
    parser.add_argument("--local", action="store_true", help="a plain local folder (on /dev/shm) instead of S3")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    bindir = debian_pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found (make test installs them)")
    root = tempfile.mkdtemp(prefix="dbstash-bench-ab-", dir="/dev/shm")
    s3 = S3Server.start(RCLONE, root)
    conf = os.path.join(root, "rclone.conf")
    Path(conf).write_text(s3.config)
    server = PgServer.start(bindir)
    try:
        pgbench = [os.path.join(bindir, "pgbench"), "-i", "-q", "-s", str(args.scale), "--no-vacuum"]
        subprocess.run(pgbench, env=server.env(), check=True, capture_output=True)
        folder = f"ab-{args.scale}"
        remote = os.path.join(root, "local", folder) if args.local else s3.remote(folder)
        pg_dump = os.path.join(bindir, "pg_dump")
        raw = f"{pg_dump} --no-password --format=plain | {RCLONE} rcat {remote}/raw.sql"
        env = dbstash_env(server.uri(), remote, conf, args.template)
        variants = {
            "raw": (["bash", "-o", "pipefail", "-c", raw], {**server.env(), "RCLONE_CONFIG": conf}),
            "before": ([DBSTASH, "backup"], {**env, "PYTHONPATH": str(Path(args.before).resolve())}),
            "after": ([DBSTASH, "backup"], env),
        }
        for argv, venv in variants.values():  # warm-up: page cache, bytecode caches
            timed(argv, venv)
        times: dict[str, list[float]] = {v: [] for v in variants}
        objects = Path(remote) if args.local else Path(s3.root) / s3.bucket / folder
        for i in range(args.rounds):
            for name in list(variants) if i % 2 == 0 else list(reversed(variants)):
                argv, venv = variants[name]
                times[name].append(timed(argv, venv)[0])
                for f in objects.glob("app-*"):
                    f.unlink()
            print(f"  round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    finally:
        server.destroy()
        s3.stop()
        shutil.rmtree(root, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    per_round = {k: [t / r for t, r in zip(v, times["raw"], strict=True)] for k, v in times.items() if k != "raw"}
    path = save_results(args.out, "ab", [{"scale": args.scale, "times": times, "medians": medians}])
    print("\n| scale | raw pipe | before | after | before/raw | after/raw | after - before | per-round after/raw |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.scale} | {medians['raw']:.2f}s | {medians['before']:.2f}s | {medians['after']:.2f}s "
        f"| {medians['before'] / medians['raw']:.3f}x | {medians['after'] / medians['raw']:.3f}x "
        f"| {medians['after'] - medians['before']:+.2f}s "
        f"| {min(per_round['after']):.2f}-{max(per_round['after']):.2f} |"
    )
    print(f"raw results: {path}")


if __name__ == "__main__":
    main()

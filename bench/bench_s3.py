"""dbstash into an S3 remote against the raw pipe: the direct commit, the rename commit, the temp-file way.

``rclone serve s3`` on loopback (its objects on /dev/shm), a pgbench database at two sizes;
interleaved rounds (raw, direct, rename, temp file, then reversed) so drift hits every variant
alike; medians and ratios, never absolute targets. The overhead of a variant over the raw pipe at
the small and the big size shows whether its commit grows with the backup (the rename's
server-side copy does; the direct commit should stay flat).

    python bench/bench_s3.py --scale 70 --small-scale 7 --rounds 5
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import PgServer, S3Server, debian_pg_bindir  # noqa: E402

from bench.bench_pg import DBSTASH, RCLONE, VENV_BIN, save_results, timed  # noqa: E402


def run(scale: int, rounds: int, s3: S3Server, conf: str, bindir: str, *, key: str) -> dict[str, Any]:
    server = PgServer.start(bindir)
    try:
        subprocess.run(
            [os.path.join(bindir, "pgbench"), "-i", "-q", "-s", str(scale), "--no-vacuum"],
            env=server.env(),
            check=True,
            capture_output=True,
        )
        db_size = int(server.psql("SELECT pg_database_size('app')"))
        folder = f"bench-{scale}"
        pg_dump = os.path.join(bindir, "pg_dump")
        base_env = {**server.env(), "RCLONE_CONFIG": conf}
        raw_cmd = f"{pg_dump} --no-password --format=plain | {RCLONE} rcat {s3.remote(folder)}/raw.sql"
        work = Path(tempfile.mkdtemp(prefix="dbstash-bench-s3-"))
        tmp_cmd = (
            f"{pg_dump} --no-password --format=plain > {work}/dump.sql && "
            f"{RCLONE} copyto {work}/dump.sql {s3.remote(folder)}/tmp.sql && rm -f {work}/dump.sql"
        )
        db_env = {
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/root"),
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warn",
            "DB_URI": server.uri(),
            "RCLONE_REMOTE": s3.remote(folder),
            "RCLONE_CONFIG_FILE": conf,
            "BACKUP_NAME_TEMPLATE": "{db}-{uuid}",
        }
        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "raw": (["bash", "-o", "pipefail", "-c", raw_cmd], base_env),
            "direct": ([DBSTASH, "backup"], {**db_env, "RCLONE_COMMIT": "auto"}),
            # the direct commit with every manifest signed (BACKUP_SIGNING_KEY_FILE): the cost of signing,
            # next to the direct commit in every round
            "signed": ([DBSTASH, "backup"], {**db_env, "RCLONE_COMMIT": "auto", "BACKUP_SIGNING_KEY_FILE": key}),
            "rename": ([DBSTASH, "backup"], {**db_env, "RCLONE_COMMIT": "rename"}),
            "tempfile": (["bash", "-c", tmp_cmd], base_env),
        }
        for argv, env in variants.values():  # warm-up: page cache, bytecode caches
            timed(argv, env)
        times: dict[str, list[float]] = {v: [] for v in variants}
        objects = Path(s3.root) / s3.bucket / folder
        for i in range(rounds):
            order = list(variants) if i % 2 == 0 else list(reversed(variants))
            for name in order:
                argv, env = variants[name]
                times[name].append(timed(argv, env)[0])
                for f in objects.glob("app-*"):
                    f.unlink()
            print(f"  scale {scale} round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
        dump_size = (objects / "raw.sql").stat().st_size
        med = {k: statistics.median(v) for k, v in times.items()}
        shutil.rmtree(work, ignore_errors=True)
        return {
            "scale": scale,
            "database_bytes": db_size,
            "dump_bytes": dump_size,
            "rounds": rounds,
            "median_seconds": med,
            "ratios_vs_raw": {k: med[k] / med["raw"] for k in med},
            "overhead_seconds_vs_raw": {k: med[k] - med["raw"] for k in med},
        }
    finally:
        server.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale of the big run (70 = ~1 GB)")
    parser.add_argument("--small-scale", type=int, default=7, help="pgbench scale of the small run (~100 MB)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    bindir = debian_pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found (make test installs them)")
    root = tempfile.mkdtemp(prefix="dbstash-bench-s3-", dir="/dev/shm")
    s3 = S3Server.start(RCLONE, root)
    conf = os.path.join(root, "rclone.conf")
    Path(conf).write_text(s3.config)
    key = os.path.join(root, "signing-key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    try:
        results = [
            run(args.small_scale, args.rounds, s3, conf, bindir, key=key),
            run(args.scale, args.rounds, s3, conf, bindir, key=key),
        ]
    finally:
        s3.stop()
        shutil.rmtree(root, ignore_errors=True)
    path = save_results(args.out, "s3", results)
    print(
        "\n| scale | dump | raw pipe | direct | rename | temp file | direct/raw | rename/raw | temp/raw "
        "| direct - raw | rename - raw | signed/raw | signed - direct |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m, q, o = r["median_seconds"], r["ratios_vs_raw"], r["overhead_seconds_vs_raw"]
        print(
            f"| {r['scale']} | {r['dump_bytes'] / 1e6:.0f} MB | {m['raw']:.2f}s | {m['direct']:.2f}s "
            f"| {m['rename']:.2f}s | {m['tempfile']:.2f}s | {q['direct']:.3f}x | {q['rename']:.3f}x "
            f"| {q['tempfile']:.3f}x | {o['direct']:+.2f}s | {o['rename']:+.2f}s "
            f"| {q['signed']:.3f}x | {m['signed'] - m['direct']:+.3f}s |"
        )
    print(f"raw results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

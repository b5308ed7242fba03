"""One dump into two ``rclone serve s3`` servers at once, against the raw pipe into one and two raw pipes in turn.

A pgbench database; two S3 servers on loopback (objects on /dev/shm, so storing the backups is not
local disk); interleaved rounds (then reversed) so drift hits every variant alike. Reports medians
and ratios, dbstash's own peak RSS (VmHWM of the dbstash process, children excluded) and the bytes
the dbstash process tree wrote to local disk (/proc/PID/io write_bytes).

    python bench/bench_fanout.py --scale 50 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import resource
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


def server_cpu(servers: tuple[S3Server, ...]) -> float:
    """CPU seconds the S3 servers used so far (utime + stime from /proc/PID/stat)."""
    total = 0
    for server in servers:
        with open(f"/proc/{server.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run(scale: int, rounds: int, servers: tuple[S3Server, S3Server], conf: str, bindir: str) -> dict[str, Any]:
    one, two = servers
    server = PgServer.start(bindir)
    try:
        subprocess.run(
            [os.path.join(bindir, "pgbench"), "-i", "-q", "-s", str(scale), "--no-vacuum"],
            env=server.env(),
            check=True,
            capture_output=True,
        )
        folder = f"fan-{scale}"
        pg_dump = f"{os.path.join(bindir, 'pg_dump')} --no-password --format=plain"
        base_env = {**server.env(), "RCLONE_CONFIG": conf}
        raw_one = f"{pg_dump} | {RCLONE} rcat {one.remote(folder)}/raw.sql"
        raw_two = f"{raw_one} && {pg_dump} | {RCLONE} rcat {two.remote(folder)}/raw.sql"
        # the shell's own fan-out: one pg_dump through tee(1) into two rclones (no commit protocol at all)
        tee_one, tee_two = (f"{RCLONE} rcat {s3.remote(folder)}/tee.sql" for s3 in (one, two))
        raw_tee = f"{pg_dump} | tee >({tee_one}) | {tee_two}"
        db_env = {
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/root"),
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warn",
            "DB_URI": server.uri(),
            "RCLONE_REMOTE": f"{one.remote(folder)} {two.remote(folder)}",
            "RCLONE_CONFIG_FILE": conf,
            "BACKUP_NAME_TEMPLATE": "{db}-{uuid}",
        }
        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "raw_one": (["bash", "-o", "pipefail", "-c", raw_one], base_env),
            "raw_two_in_turn": (["bash", "-o", "pipefail", "-c", raw_two], base_env),
            "raw_tee_both": (["bash", "-o", "pipefail", "-c", raw_tee], base_env),
            "dbstash_one": ([DBSTASH, "backup"], {**db_env, "RCLONE_REMOTE": one.remote(folder)}),
            "dbstash_both": ([DBSTASH, "backup"], db_env),
        }
        for argv, env in variants.values():  # warm-up: page cache, bytecode caches
            timed(argv, env)
        times: dict[str, list[float]] = {v: [] for v in variants}
        cpu_seconds: dict[str, list[float]] = {v: [] for v in variants}
        server_seconds: dict[str, list[float]] = {v: [] for v in variants}
        peak_kb: list[int] = []
        written: list[int] = []
        for i in range(rounds):
            order = list(variants) if i % 2 == 0 else list(reversed(variants))
            for name in order:
                argv, env = variants[name]
                before, served = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(servers)
                elapsed, stats = timed(argv, env, measure=name == "dbstash_both")
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                times[name].append(elapsed)
                cpu_seconds[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                server_seconds[name].append(server_cpu(servers) - served)
                if name == "dbstash_both":
                    peak_kb.append(stats.get("hwm_kb", 0))
                    written.append(stats.get("write_bytes", 0))
                for s3 in (one, two):
                    for f in (Path(s3.root) / s3.bucket / folder).glob("app-*"):
                        f.unlink()
            print(f"  scale {scale} round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
            print(
                "    cpu seconds (the variant's reaped processes + the S3 servers): "
                + ", ".join(f"{k} {v[-1]:.2f}+{server_seconds[k][-1]:.2f}" for k, v in cpu_seconds.items())
            )
        dump_size = (Path(one.root) / one.bucket / folder / "raw.sql").stat().st_size
        med = {k: statistics.median(v) for k, v in times.items()}
        return {
            "scale": scale,
            "dump_bytes": dump_size,
            "rounds": rounds,
            "median_seconds": med,
            "median_cpu_seconds": {k: statistics.median(v) for k, v in cpu_seconds.items()},
            "median_server_cpu_seconds": {k: statistics.median(v) for k, v in server_seconds.items()},
            "cores": os.cpu_count(),
            "per_round_both_vs_one": [b / r for b, r in zip(times["dbstash_both"], times["raw_one"], strict=True)],
            "both_vs_raw_one": med["dbstash_both"] / med["raw_one"],
            "both_vs_raw_two_in_turn": med["dbstash_both"] / med["raw_two_in_turn"],
            "both_vs_raw_tee_both": med["dbstash_both"] / med["raw_tee_both"],
            "one_vs_raw_one": med["dbstash_one"] / med["raw_one"],
            "raw_tee_both_vs_raw_one": med["raw_tee_both"] / med["raw_one"],
            "dbstash_peak_rss_mb": max(peak_kb) / 1024,
            "dbstash_local_disk_write_bytes": max(written),
        }
    finally:
        server.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=50, help="pgbench scale (50 = ~0.5 GB dump)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    bindir = debian_pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found (make test installs them)")
    root = tempfile.mkdtemp(prefix="dbstash-bench-fanout-", dir="/dev/shm")
    started = [S3Server.start(RCLONE, os.path.join(root, label)) for label in ("one", "two")]
    one, two = (
        S3Server(s.root, s.port, s.proc, remote_name=f"s3{n}") for s, n in zip(started, ("one", "two"), strict=True)
    )
    conf = os.path.join(root, "rclone.conf")
    Path(conf).write_text(one.config + two.config)
    try:
        result = run(args.scale, args.rounds, (one, two), conf, bindir)
    finally:
        for s3 in (one, two):
            s3.stop()
        shutil.rmtree(root, ignore_errors=True)
    path = save_results(args.out, "fanout", result)
    m = result["median_seconds"]
    print(
        "\n| scale | dump | raw pipe, one | two raw pipes in turn | raw tee to both | dbstash to both | both/one "
        "| both/two in turn | both/raw tee | raw tee/one | dbstash to one / raw one | dbstash peak RSS | local disk |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {result['scale']} | {result['dump_bytes'] / 1e6:.0f} MB | {m['raw_one']:.2f}s "
        f"| {m['raw_two_in_turn']:.2f}s | {m['raw_tee_both']:.2f}s "
        f"| {m['dbstash_both']:.2f}s | {result['both_vs_raw_one']:.3f}x | {result['both_vs_raw_two_in_turn']:.3f}x "
        f"| {result['both_vs_raw_tee_both']:.3f}x | {result['raw_tee_both_vs_raw_one']:.3f}x "
        f"| {result['one_vs_raw_one']:.3f}x "
        f"| {result['dbstash_peak_rss_mb']:.0f} MB | {result['dbstash_local_disk_write_bytes']} bytes |"
    )
    print("per round (both/one): " + ", ".join(f"{x:.3f}" for x in result["per_round_both_vs_one"]))
    cpu, served = result["median_cpu_seconds"], result["median_server_cpu_seconds"]
    print(
        f"median CPU seconds on {result['cores']} cores (reaped processes + S3 servers; postgres not counted): "
        + ", ".join(f"{k} {cpu[k]:.2f}+{served[k]:.2f}" for k in cpu)
    )
    print(f"raw results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

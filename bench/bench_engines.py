"""dbstash against the raw ``dump | rclone rcat`` pipeline for MariaDB and Redis, and in-stream zstd.

Interleaved rounds (raw, dbstash, raw zstd, dbstash zstd; the order flips every round), medians and
ratios, never absolute targets. MariaDB: a ~500 MB SQL dump; Redis: a ~500 MB RDB. The remote is a
folder on tmpfs (/dev/shm). Both sides run the same dump flags; the raw side gets its password the
way a careful shell user would (an option file / REDISCLI_AUTH), dbstash through its env variables.

    python bench/bench_engines.py --mariadb-mb 500 --redis-mb 500 --rounds 5 [--s3]

``--s3``: into ``rclone serve s3`` on loopback (objects on /dev/shm) instead of a folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.dbservers import MariaDbServer, RedisServer  # noqa: E402
from tests.support.servers import S3Server  # noqa: E402

from bench.bench_pg import DBSTASH, RCLONE, VENV_BIN, save_results, timed  # noqa: E402
from dbstash.engines.mysql import option_value  # noqa: E402

ZSTD = shutil.which("zstd")


def seed_mariadb(server: MariaDbServer, megabytes: int) -> None:
    # ~250 bytes of hex per row: realistic entropy for zstd (hash text, not repeated strings)
    rows = megabytes * 1_000_000 // 250
    server.sql(
        "CREATE TABLE big(id INT PRIMARY KEY, a CHAR(64), b CHAR(128), n BIGINT, note VARCHAR(40))", server.database
    )
    step = 500_000
    for start in range(0, rows, step):
        server.sql(
            f"INSERT INTO big SELECT seq, SHA2(seq, 256), SHA2(seq, 512), seq * 7919, CONCAT('row ', seq) "  # noqa: S608 - numbers only
            f"FROM seq_{start + 1}_to_{min(rows, start + step)}",
            server.database,
        )


def seed_redis(server: RedisServer, megabytes: int) -> None:
    keys = megabytes * 1_000_000 // 220
    batch = 200_000
    for start in range(0, keys, batch):
        parts = []
        for i in range(start, min(keys, start + batch)):
            key, value = f"k:{i}", os.urandom(100).hex()
            parts.append(f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${len(value)}\r\n{value}\r\n")
        server.cli("--pipe", stdin="".join(parts).encode())


def variants(
    engine: str, server: Any, remote: str, workdir: Path, rclone_config: str = ""
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each variant's argv; the environment shared by the raw ones."""
    env = {
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "RCLONE_CONFIG": rclone_config,
    }
    if engine == "mariadb":
        cnf = workdir / "client.cnf"
        cnf.write_text(
            f"[client]\nuser=app\npassword={option_value(server.password)}\nhost=127.0.0.1\nport={server.port}\n"
        )
        cnf.chmod(0o600)
        dump = (
            f"mariadb-dump --defaults-extra-file={cnf} --single-transaction --routines --triggers --events "
            f"-- {server.database}"
        )
        ext = ".sql"
    else:
        env["REDISCLI_AUTH"] = server.password
        dump = f"redis-cli -h 127.0.0.1 -p {server.port} --no-auth-warning --rdb -"
        ext = ".rdb"
    cmds = {
        "raw": ["bash", "-o", "pipefail", "-c", f"{dump} | {RCLONE} rcat {remote}/raw{ext}"],
        "dbstash": [DBSTASH, "backup"],
        "dbstash_zstd": [DBSTASH, "backup", "--stream-compress", "zstd"],
    }
    if ZSTD:
        cmds["raw_zstd"] = [
            "bash",
            "-o",
            "pipefail",
            "-c",
            f"{dump} | {ZSTD} -q -3 -T0 -c | {RCLONE} rcat {remote}/raw{ext}.zst",
        ]
    return cmds, env


def run(engine: str, megabytes: int, rounds: int, workdir: Path, s3: S3Server | None = None) -> dict[str, Any]:
    server: MariaDbServer | RedisServer
    t0 = time.perf_counter()
    if engine == "mariadb":
        server = MariaDbServer.start()
        seed_mariadb(server, megabytes)
        uri = server.uri(scheme="mariadb")
    else:
        server = RedisServer.start()
        seed_redis(server, megabytes)
        uri = server.uri()
    print(f"{engine}: seeded ~{megabytes} MB in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    conf = ""
    if s3 is not None:  # into `rclone serve s3` (objects on /dev/shm): the direct commit
        folder = f"bench-{engine}-{os.getpid()}"
        remote = Path(s3.root) / s3.bucket / folder
        remote.mkdir(parents=True)
        remote_path = s3.remote(folder)
        conf = str(workdir / "rclone.conf")
        Path(conf).write_text(s3.config)
    else:
        remote = Path(tempfile.mkdtemp(prefix=f"dbstash-bench-{engine}-", dir="/dev/shm"))
        remote_path = str(remote)
    try:
        cmds, raw_env = variants(engine, server, remote_path, workdir, conf)
        db_env = {
            "PATH": raw_env["PATH"],
            "HOME": raw_env["HOME"],
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warn",
            "DB_URI": uri,
            "RCLONE_REMOTE": remote_path,
            "BACKUP_NAME_TEMPLATE": "{db}-{uuid}",
            **({"RCLONE_CONFIG_FILE": conf} if conf else {}),
        }
        for name in ("raw", "dbstash"):  # warm-up, not recorded
            timed(cmds[name], raw_env if name.startswith("raw") else db_env)
        times: dict[str, list[float]] = {k: [] for k in cmds}
        sizes: dict[str, int] = {}
        for i in range(rounds):
            order = list(cmds) if i % 2 == 0 else list(reversed(cmds))
            for name in order:
                for f in remote.iterdir():
                    f.unlink()
                if s3 is not None:
                    time.sleep(1.1)  # objects removed behind serve s3's back: its directory cache is 1 s
                t, _ = timed(cmds[name], raw_env if name.startswith("raw") else db_env)
                times[name].append(t)
                sizes[name] = sum(f.stat().st_size for f in remote.iterdir())
            print(f"  round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        result: dict[str, Any] = {
            "engine": engine,
            "dump_bytes": sizes["raw"],
            "rounds": rounds,
            "median_seconds": med,
            "min_max_seconds": {k: [min(v), max(v)] for k, v in times.items()},
            "ratio_dbstash_vs_raw": med["dbstash"] / med["raw"],
            "zstd_stored_bytes": sizes["dbstash_zstd"],
            "zstd_compression_ratio": sizes["raw"] / sizes["dbstash_zstd"],
            "zstd_throughput_mb_s": sizes["raw"] / 1e6 / med["dbstash_zstd"],
        }
        if "raw_zstd" in med:
            result["ratio_dbstash_zstd_vs_raw_zstd"] = med["dbstash_zstd"] / med["raw_zstd"]
        return result
    finally:
        server.destroy()
        shutil.rmtree(remote, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mariadb-mb", type=int, default=500, help="approximate size of the MariaDB dump")
    parser.add_argument("--redis-mb", type=int, default=500, help="approximate size of the Redis RDB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", default="mariadb,redis")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--s3", action="store_true", help="into `rclone serve s3` on loopback instead of a folder")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="dbstash-bench-"))
    results = []
    s3 = S3Server.start(RCLONE, tempfile.mkdtemp(prefix="dbstash-bench-s3-", dir="/dev/shm")) if args.s3 else None
    try:
        for engine in args.engines.split(","):
            mb = args.mariadb_mb if engine == "mariadb" else args.redis_mb
            results.append(run(engine, mb, args.rounds, workdir, s3))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if s3 is not None:
            s3.stop()
            shutil.rmtree(s3.root, ignore_errors=True)
    path = save_results(args.out, "engines", results)
    print(
        "| engine | dump | raw pipe | dbstash | dbstash/raw | raw + zstd -T0 | dbstash zstd | zstd dbstash/raw "
        "| zstd ratio | zstd throughput |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m = r["median_seconds"]
        raw_z = f"{m['raw_zstd']:.2f}s" if "raw_zstd" in m else "n/a"
        rz = f"{r['ratio_dbstash_zstd_vs_raw_zstd']:.3f}x" if "ratio_dbstash_zstd_vs_raw_zstd" in r else "n/a"
        print(
            f"| {r['engine']} | {r['dump_bytes'] / 1e6:.0f} MB | {m['raw']:.2f}s | {m['dbstash']:.2f}s "
            f"| {r['ratio_dbstash_vs_raw']:.3f}x | {raw_z} | {m['dbstash_zstd']:.2f}s | {rz} "
            f"| {r['zstd_compression_ratio']:.2f}x | {r['zstd_throughput_mb_s']:.0f} MB/s |"
        )
    print(f"raw results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""The fixed cost of a run: a tiny PostgreSQL database into ``rclone serve s3`` and a local folder.

With a dump of a few kilobytes the raw ``pg_dump | rclone rcat`` is all start-up, so whatever dbstash
adds is its per-run cost: interpreter and imports, probes, the guardian, the manifest. Interleaved
pairs, medians; also the CPU time of each variant's whole process tree (on a 2-core machine wall
time follows it).

    python bench/bench_fixed.py --rounds 15
    python bench/bench_fixed.py --rounds 15 --python /usr/bin/python3   # another interpreter

``--python`` runs dbstash (``-m dbstash_cli``, this checkout's ``src`` and the venv's packages on
``PYTHONPATH``) with another CPython 3.11: e.g. Debian's, built with PGO and LTO like the official
``python`` images, where the venv's interpreter (pyenv) is built without them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import PgServer, S3Server, debian_pg_bindir  # noqa: E402

from bench.bench_pg import DBSTASH, RCLONE, dbstash_env, timed  # noqa: E402


def cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--python", help="run dbstash with this interpreter (default: the venv's console script)")
    args = parser.parse_args()
    dbstash = [args.python, "-m", "dbstash_cli", "backup"] if args.python else [DBSTASH, "backup"]
    bindir = debian_pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found (make test installs them)")
    root = tempfile.mkdtemp(prefix="dbstash-bench-fixed-", dir="/dev/shm")
    s3 = S3Server.start(RCLONE, os.path.join(root, "s3"))
    conf = os.path.join(root, "rclone.conf")
    Path(conf).write_text(s3.config)
    server = PgServer.start(bindir)
    try:
        server.psql("CREATE TABLE t(a int); INSERT INTO t SELECT generate_series(1, 1000)")
        pg_dump = os.path.join(bindir, "pg_dump")
        local = os.path.join(root, "local")
        os.makedirs(local)
        print("| remote | raw pipe | dbstash | dbstash - raw | CPU raw | CPU dbstash |")
        print("|---|---|---|---|---|---|")
        key = os.path.join(root, "signing-key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        signed = {"BACKUP_SIGNING_KEY_FILE": key}
        cases: tuple[tuple[str, str, str, dict[str, str]], ...] = (
            ("serve s3", s3.remote("fixed"), "{db}-{uuid}", {}),
            # every manifest signed: the cost of signing is this row's overhead less the first's
            ("serve s3, signed", s3.remote("fixed"), "{db}-{uuid}", signed),
            ("local folder", local, "{db}-{uuid}", {}),
            ("local folder, signed", local, "{db}-{uuid}", signed),
            # the default template has only the time in it: on S3 a zero-byte claim and a listing first
            ("serve s3, default template", s3.remote("fixed"), "{db}-{date}-{time}", {}),
        )
        for label, remote, template, extra in cases:
            raw = [
                "bash",
                "-o",
                "pipefail",
                "-c",
                f"{pg_dump} --no-password --format=plain | {RCLONE} rcat {remote}/raw.sql",
            ]
            raw_env = {**server.env(), "RCLONE_CONFIG": conf}
            env = dbstash_env(server.uri(), remote, conf, template, **extra)
            if args.python:
                site = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))
                env["PYTHONPATH"] = f"{ROOT / 'src'}:{site}"
            for _ in range(3):  # warm-up: page cache, bytecode
                timed(raw, raw_env)
                timed(dbstash, env)
            times: dict[str, list[float]] = {"raw": [], "dbstash": []}
            cpu: dict[str, float] = {"raw": 0.0, "dbstash": 0.0}
            for i in range(args.rounds):
                for name in ("raw", "dbstash") if i % 2 == 0 else ("dbstash", "raw"):
                    c0 = cpu_of_children()
                    times[name].append(timed(raw if name == "raw" else dbstash, raw_env if name == "raw" else env)[0])
                    cpu[name] += cpu_of_children() - c0
            r, d = statistics.median(times["raw"]), statistics.median(times["dbstash"])
            print(
                f"| {label} | {r:.3f}s | {d:.3f}s | +{d - r:.3f}s | {cpu['raw'] / args.rounds:.3f}s "
                f"| {cpu['dbstash'] / args.rounds:.3f}s |"
            )
            subprocess.run(["rm", "-rf", local, os.path.join(root, "s3", s3.bucket, "fixed")], check=False)
            os.makedirs(local, exist_ok=True)
    finally:
        server.destroy()
        s3.proc.terminate()
        s3.proc.wait()
        subprocess.run(["rm", "-rf", root], check=False)


if __name__ == "__main__":
    main()

"""dbstash against the raw shell pipeline and the temp-file way, on a pgbench database.

Interleaved rounds (raw, dbstash, temp file, raw, dbstash, ...) so that drift on a shared machine
hits every variant alike; reports medians and ratios, never absolute targets. Also measures
dbstash's own peak RSS (VmHWM of the dbstash process, children excluded) at two database sizes
and the bytes each variant wrote to local disk: /proc/PID/io write_bytes of the whole process tree
(children are added when reaped), with the remote on tmpfs (/dev/shm) so that storing the backup
itself is not counted, plus files left in a private TMPDIR.

    python bench/bench_pg.py --scale 70 --small-scale 10 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
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

from tests.support.servers import PgServer, debian_pg_bindir, free_port, wait_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent
RCLONE = str(VENV_BIN / "rclone")
DBSTASH = str(VENV_BIN / "dbstash")
PIPELINE = [sys.executable, str(Path(__file__).resolve().parent / "pipeline_run.py")]


def watch(pid: int, stats: dict[str, int], done: threading.Event) -> None:
    """Poll /proc/PID for peak RSS and bytes written until the process exits."""
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        stats["hwm_kb"] = max(stats.get("hwm_kb", 0), int(line.split()[1]))
            with open(f"/proc/{pid}/io") as fh:
                for line in fh:
                    if line.startswith("write_bytes:"):
                        stats["write_bytes"] = int(line.split()[1])
        except (OSError, ValueError):
            pass
        time.sleep(0.02)


def timed(argv: list[str], env: dict[str, str], measure: bool = False) -> tuple[float, dict[str, int]]:
    stats: dict[str, int] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()
    watcher = threading.Thread(target=watch, args=(proc.pid, stats, done)) if measure else None
    if watcher:
        watcher.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - t0
    done.set()
    if watcher:
        watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {err.decode()[-2000:]}")
    return elapsed, stats


def dbstash_env(uri: str, remote: str, conf: str, template: str, **extra: str) -> dict[str, str]:
    """The environment of a timed ``dbstash backup``: quiet text logs, the rclone config as a file."""
    return {
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "warn",
        "DB_URI": uri,
        "RCLONE_REMOTE": remote,
        "RCLONE_CONFIG_FILE": conf,
        "BACKUP_NAME_TEMPLATE": template,
        **extra,
    }


def save_results(out_dir: str, kind: str, results: Any) -> Path:
    """Write *results* to ``OUT_DIR/bench-KIND-<time>.json`` (every bench keeps its raw numbers)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def rcd_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


def run(scale: int, rounds: int, workdir: Path, bindir: str, baseline: str | None = None) -> dict[str, Any]:
    server = PgServer.start(bindir)
    rcd_port = free_port()
    rcd = subprocess.Popen(
        [RCLONE, "rcd", "--rc-addr", f"127.0.0.1:{rcd_port}"],
        env={**os.environ, "RCLONE_CONFIG": "", "RCLONE_RC_USER": "bench", "RCLONE_RC_PASS": "bench-pass"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(rcd_port)
    try:
        t0 = time.perf_counter()
        subprocess.run(
            [os.path.join(bindir, "pgbench"), "-i", "-q", "-s", str(scale), "--no-vacuum"],
            env=server.env(),
            check=True,
            capture_output=True,
        )
        db_size = int(server.psql("SELECT pg_database_size('app')"))
        print(f"scale {scale}: database {db_size / 1e6:.0f} MB (init {time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        remote = Path(tempfile.mkdtemp(prefix=f"dbstash-bench-remote-{scale}-", dir="/dev/shm"))
        pg_dump = os.path.join(bindir, "pg_dump")
        base_env = {**server.env(), "RCLONE_CONFIG": "/dev/null"}
        raw_cmd = f"{pg_dump} --no-password --format=plain | {RCLONE} rcat {remote}/raw.sql"
        tmpfile = workdir / "dump.sql"
        tmp_cmd = (
            f"{pg_dump} --no-password --format=plain > {tmpfile} && "
            f"{RCLONE} copyto {tmpfile} {remote}/tmp.sql && rm -f {tmpfile}"
        )
        private_tmp = workdir / f"tmp-{scale}"
        private_tmp.mkdir()
        db_env = {
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", "/root"),
            "TMPDIR": str(private_tmp),
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warn",
            "DB_URI": server.uri(),
            "RCLONE_REMOTE": str(remote),
            "BACKUP_NAME_TEMPLATE": "{db}-{uuid}",
        }
        rc_env = {
            **db_env,
            "RCLONE_RC_URL": f"http://127.0.0.1:{rcd_port}",
            "RCLONE_RC_USER": "bench",
            "RCLONE_RC_PASS": "bench-pass",
        }
        # warm-up (page cache, Python bytecode caches): not recorded
        timed(["bash", "-o", "pipefail", "-c", raw_cmd], base_env)
        timed([DBSTASH, "backup"], db_env)
        variants = ["raw", "dbstash", "dbstash_rc", "tempfile", "pipeline_fast", "pipeline_async"]
        if baseline:  # an earlier dbstash (its own venv), measured in the same rounds: before/after, same run
            variants.append("baseline")
        times: dict[str, list[float]] = {v: [] for v in variants}
        hwm: dict[str, list[int]] = {"dbstash": [], "dbstash_rc": []}
        written: dict[str, list[int]] = {v: [] for v in variants}
        for i in range(rounds):
            order = variants if i % 2 == 0 else list(reversed(variants))
            for variant in order:
                if variant == "raw":
                    t, st = timed(["bash", "-o", "pipefail", "-c", raw_cmd], base_env, measure=True)
                elif variant == "tempfile":
                    t, st = timed(["bash", "-c", tmp_cmd], base_env, measure=True)
                elif variant == "baseline":
                    assert baseline is not None
                    t, st = timed([baseline, "backup"], db_env, measure=True)
                    for f in remote.glob("app-*"):
                        f.unlink()
                elif variant.startswith("pipeline_"):
                    # the library's Pipeline alone (no manifest, no retention): the two relay paths compared
                    t, st = timed([*PIPELINE, variant.removeprefix("pipeline_")], db_env, measure=True)
                    for f in remote.glob("pipeline-*"):
                        f.unlink()
                else:
                    t, st = timed([DBSTASH, "backup"], db_env if variant == "dbstash" else rc_env, measure=True)
                    hwm[variant].append(st.get("hwm_kb", 0))
                    for f in remote.glob("app-*"):
                        f.unlink()
                written[variant].append(st.get("write_bytes", 0))
                times[variant].append(t)
            print(f"  round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr)
        dump_size = (remote / "raw.sql").stat().st_size
        med = {k: statistics.median(v) for k, v in times.items()}
        return {
            "scale": scale,
            "database_bytes": db_size,
            "dump_bytes": dump_size,
            "rounds": rounds,
            "median_seconds": med,
            "min_max_seconds": {k: [min(v), max(v)] for k, v in times.items()},
            "ratio_dbstash_vs_raw": med["dbstash"] / med["raw"],
            "ratio_tempfile_vs_raw": med["tempfile"] / med["raw"],
            "ratio_rc_vs_raw": med["dbstash_rc"] / med["raw"],
            "ratio_rc_vs_rcat": med["dbstash_rc"] / med["dbstash"],
            "ratio_pipeline_fast_vs_raw": med["pipeline_fast"] / med["raw"],
            "ratio_pipeline_async_vs_raw": med["pipeline_async"] / med["raw"],
            "ratio_baseline_vs_raw": med["baseline"] / med["raw"] if baseline else None,
            "dbstash_peak_rss_mb": max(hwm["dbstash"]) / 1024,
            "dbstash_rc_peak_rss_mb": max(hwm["dbstash_rc"]) / 1024,
            "rcd_peak_rss_mb": rcd_hwm_kb(rcd.pid) / 1024,
            "disk_write_bytes_max": {k: max(v) for k, v in written.items()},
            "files_left_in_tmpdir": len(list(private_tmp.iterdir())),
        }
    finally:
        server.destroy()
        rcd.terminate()
        rcd.wait()
        shutil.rmtree(remote, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale of the big run (70 = ~1 GB)")
    parser.add_argument("--small-scale", type=int, default=10, help="pgbench scale of the small run (RSS check)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument(
        "--baseline", help="the dbstash executable of an earlier version (its own venv), run in the same rounds"
    )
    args = parser.parse_args()
    bindir = debian_pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found (make test installs them)")
    workdir = Path(tempfile.mkdtemp(prefix="dbstash-bench-"))
    try:
        results = [
            run(args.small_scale, max(3, args.rounds // 2), workdir, bindir, args.baseline),
            run(args.scale, args.rounds, workdir, bindir, args.baseline),
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = save_results(args.out, "pg", results)
    print(
        "| scale | database | dump | raw pipe | dbstash | temp file | dbstash/raw | temp/raw | dbstash RSS "
        "| disk writes raw / dbstash / temp | dbstash rc | rc/rcat | rc/raw | RSS dbstash rc / rcd |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m, disk = r["median_seconds"], r["disk_write_bytes_max"]
        assert isinstance(m, dict)
        assert isinstance(disk, dict)
        print(
            f"| {r['scale']} | {r['database_bytes'] / 1e6:.0f} MB | {r['dump_bytes'] / 1e6:.0f} MB "
            f"| {m['raw']:.2f}s | {m['dbstash']:.2f}s | {m['tempfile']:.2f}s "
            f"| {r['ratio_dbstash_vs_raw']:.3f}x | {r['ratio_tempfile_vs_raw']:.3f}x "
            f"| {r['dbstash_peak_rss_mb']:.1f} MB | {disk['raw']} B / {disk['dbstash']} B / {disk['tempfile']} B "
            f"| {m['dbstash_rc']:.2f}s | {r['ratio_rc_vs_rcat']:.3f}x | {r['ratio_rc_vs_raw']:.3f}x "
            f"| {r['dbstash_rc_peak_rss_mb']:.1f} MB / {r['rcd_peak_rss_mb']:.1f} MB |"
        )
    small, big = results
    ms, mb = small["median_seconds"], big["median_seconds"]
    assert isinstance(ms, dict)
    assert isinstance(mb, dict)
    # per-byte cost: the fixed per-run costs (interpreter start, version probe, commit calls) cancel out
    marginal = (mb["dbstash"] - ms["dbstash"]) / (mb["raw"] - ms["raw"])
    print(f"\nmarginal (per-byte) ratio dbstash/raw between the two sizes: {marginal:.3f}x")
    print("\n| scale | Pipeline fast path | Pipeline async path | fast/raw | async/raw | async/fast |")
    print("|---|---|---|---|---|---|")
    for r in results:
        m = r["median_seconds"]
        assert isinstance(m, dict)
        print(
            f"| {r['scale']} | {m['pipeline_fast']:.2f}s | {m['pipeline_async']:.2f}s "
            f"| {r['ratio_pipeline_fast_vs_raw']:.3f}x | {r['ratio_pipeline_async_vs_raw']:.3f}x "
            f"| {m['pipeline_async'] / m['pipeline_fast']:.3f}x |"
        )
        if r.get("ratio_baseline_vs_raw"):
            print(f"  scale {r['scale']}: baseline {m['baseline']:.2f}s = {r['ratio_baseline_vs_raw']:.3f}x raw")
    print(f"raw results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

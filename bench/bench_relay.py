"""The relay's two loops on the same bytes: read/hash/write (two copies per byte) and tee/splice (one).

A producer (``head -c SIZE /dev/zero``) writes into a pipe, dbstash's :class:`~dbstash.relay.Relay`
moves it into another pipe read by ``cat > /dev/null``, hashing on the way. Interleaved rounds,
medians of the wall time and of the CPU time of the relay thread alone (``time.thread_time``).

    python bench/bench_relay.py --size-gib 2 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dbstash.process import grow_pipe  # noqa: E402
from dbstash.relay import Relay  # noqa: E402


def one(splice: bool, size: int) -> tuple[float, float, str]:
    producer = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    consumer = subprocess.Popen(["sh", "-c", "cat > /dev/null"], stdin=subprocess.PIPE)
    assert producer.stdout is not None
    assert consumer.stdin is not None
    src, dst = producer.stdout.fileno(), consumer.stdin.fileno()
    grow_pipe(src)
    grow_pipe(dst)
    relay = Relay(src, dst)
    relay.splice = splice
    t0, c0 = time.perf_counter(), time.thread_time()
    stats = relay.run()
    c1, t1 = time.thread_time(), time.perf_counter()
    consumer.stdin.close()
    consumer.wait()
    producer.wait()
    assert stats.size == size
    assert relay.path == ("splice" if splice else "copy")
    return t1 - t0, c1 - c0, stats.sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = int(args.size_gib * (1 << 30))
    runs: dict[str, list[tuple[float, float, str]]] = {"copy": [], "splice": []}
    for i in range(args.rounds):
        for name in ("copy", "splice") if i % 2 == 0 else ("splice", "copy"):
            runs[name].append(one(name == "splice", size))
    assert len({r[2] for rs in runs.values() for r in rs}) == 1, "both loops hash the same bytes"
    print("| loop | wall | relay thread CPU | CPU per GiB |")
    print("|---|---|---|---|")
    for name, rs in runs.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        print(f"| {name} | {wall:.3f}s | {cpu:.3f}s | {cpu / args.size_gib:.3f}s |")
    copy_cpu = statistics.median(r[1] for r in runs["copy"])
    splice_cpu = statistics.median(r[1] for r in runs["splice"])
    print(f"\nsplice/copy relay CPU: {splice_cpu / copy_cpu:.3f}x")


if __name__ == "__main__":
    main()

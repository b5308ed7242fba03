"""What the package's on-first-use imports save, in fresh interpreters, interleaved, medians.

An eager package would import every module that defines a public name (``dbstash._EXPORTS``) on
``import dbstash``. Two comparisons against that:

- a library user's ``import dbstash`` (an Airflow DAG file, parsed again and again; a Django
  settings module): the package alone against every exported module;
- the CLI's backup path (``dbstash``, the API and the one-database job): alone against the same
  plus every exported module.

    python bench/bench_imports.py --rounds 21
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import dbstash

EXPORTED = ", ".join(dbstash._EXPORTS)
PACKAGE = "import dbstash"
BACKUP_PATH = "import dbstash, dbstash.api, dbstash.jobs.backup"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    cases = {
        "import dbstash": (PACKAGE, f"{PACKAGE}, {EXPORTED}"),
        "the CLI's backup path": (BACKUP_PATH, f"{BACKUP_PATH}, {EXPORTED}"),
    }
    times: dict[str, list[float]] = {code: [] for pair in cases.values() for code in pair}
    for _ in range(args.rounds):
        for code, runs in times.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs.append(time.perf_counter() - t0)
    for what, (lazy, eager) in cases.items():
        a, b = statistics.median(times[lazy]), statistics.median(times[eager])
        print(f"{what}: on first use {a * 1000:.0f} ms, eager {b * 1000:.0f} ms: saves {(b - a) * 1000:.0f} ms")


if __name__ == "__main__":
    main()

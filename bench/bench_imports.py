"""What two start-up mechanisms save, in fresh interpreters, interleaved, medians.

- The package's on-first-use imports: the CLI's backup path imports ``dbstash``, the API and the
  one-database job; an eager package would also load the read side, the service, the dry run, the
  optional transports and notifiers.
- The console script's click-free path for ``dbstash run`` / ``dbstash backup`` without flags:
  ``dbstash_cli.core`` alone against it with the click CLI (``dbstash_cli.main``).


    python bench/bench_imports.py --rounds 21
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

BACKUP_PATH = "import dbstash, dbstash.api, dbstash.jobs.backup"
EVERYTHING = BACKUP_PATH + (
    ", dbstash.restoring.restore, dbstash.restoring.verify, dbstash.restoring.listing, dbstash.jobs.prune,"
    " dbstash.jobs.multi, dbstash.jobs.dryrun, dbstash.service, dbstash.notify.apprise,"
    " dbstash.storage.rclone_rc, dbstash.parts.encryption, dbstash.jobs.signing"
)


CLI_CORE = "import dbstash_cli.core"
CLI_CLICK = "import dbstash_cli.core, dbstash_cli.main"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    times: dict[str, list[float]] = {BACKUP_PATH: [], EVERYTHING: [], CLI_CORE: [], CLI_CLICK: []}
    for _ in range(args.rounds):
        for code, runs in times.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs.append(time.perf_counter() - t0)
    lazy, eager, core, click = (statistics.median(times[c]) for c in (BACKUP_PATH, EVERYTHING, CLI_CORE, CLI_CLICK))
    print(f"backup path {lazy * 1000:.0f} ms, everything {eager * 1000:.0f} ms: saves {(eager - lazy) * 1000:.0f} ms")
    print(f"cli core {core * 1000:.0f} ms, with click {click * 1000:.0f} ms: saves {(click - core) * 1000:.0f} ms")


if __name__ == "__main__":
    main()

"""The progress bar of ``dbstash backup`` on a terminal: bytes, rate, and (when the engine can estimate
the dump's size) a percentage and ETA. tqdm draws it; JSON logs and pipes never get one."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from typing import TYPE_CHECKING, Never, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm


#: the line without an estimate (or past it): bytes, time, rate
PLAIN = "{desc}: {n_fmt}B [{elapsed}, {rate_fmt}]"
#: with an estimate: percentage, bar, bytes of the total, time, ETA, rate
WITH_TOTAL = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/~{total_fmt}B [{elapsed}<{remaining}, {rate_fmt}]"


class TerminalProgress:
    """Called (from the relay thread) with the running byte count; redraws one stderr line.

    *total* is the size estimate (None: bytes and rate only). An estimate is a guess: past it the bar
    turns into a plain counter rather than claim more than 100 %.
    """

    def __init__(self, total: int | None = None, *, stream: TextIO | None = None) -> None:
        from tqdm import tqdm  # noqa: PLC0415 - only runs on a terminal draw a bar

        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._bar: tqdm[Never] = tqdm(
            total=total or None,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,  # so that its MB are megabytes
            file=self.stream,
            dynamic_ncols=True,
            leave=True,
            desc="  dump",
            mininterval=0,  # the relay reports twice a second: draw each one
            bar_format=WITH_TOTAL if total else PLAIN,
        )

    def __call__(self, done: int) -> None:
        with self._lock:
            bar = self._bar
            if bar.total is not None and done > bar.total:
                bar.total = None  # the estimate was low: stop claiming a percentage
                bar.bar_format = PLAIN
            bar.update(done - bar.n)

    @staticmethod
    def logs_above_the_bar() -> contextlib.AbstractContextManager[None]:
        """While the bar is shown, dbstash's log lines are printed above it instead of through it."""
        from tqdm.contrib.logging import logging_redirect_tqdm  # noqa: PLC0415

        return logging_redirect_tqdm(loggers=[logging.getLogger("dbstash")])

    def finish(self) -> None:
        """End the bar (at the real size: the estimate is no longer the total)."""
        with self._lock:
            bar = self._bar
            if bar.total is not None and bar.n != bar.total:
                bar.total = bar.n
            bar.close()

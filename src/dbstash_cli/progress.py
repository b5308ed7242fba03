"""A one-line progress display (bytes and rate) for terminals."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from dbstash.units import human_bytes


class TerminalProgress:
    """Called from the relay thread with the running byte count; redraws one stderr line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self.shown = False

    def __call__(self, done: int) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        with self._lock:
            self.stream.write(f"\r  {human_bytes(done):>10}  {human_bytes(done / elapsed)}/s   ")
            self.stream.flush()
            self.shown = True

    def finish(self) -> None:
        """End the progress line."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()

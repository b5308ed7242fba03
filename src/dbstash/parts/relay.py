"""The fast path: the raw-descriptor relay thread, and the stall watchdog around it.

The hot loop: full 1 MiB reads from a 1 MiB pipe, one hash update, one write. The field notes
measured a per-chunk anyio ``receive()``/``send()`` relay at 1.5x the shell pipeline and this loop at
~1.05x; on two cores every CPU-second the relay spends shows up in wall time.

A zero-copy variant (libc's ``tee(2)`` into a private pipe for the hash, ``splice(2)`` on to rclone)
saved 19% of this thread's CPU but nothing measurable end to end (pgbench scale 50 into
``rclone serve s3``, docs/benchmarks.md): it was removed with its second loop.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from dbstash.errors import DumpFailed, UploadFailed
from dbstash.parts.compression import Compressor

CHUNK = 1 << 20
#: A read shorter than this means the writer is slower than the relay: pause before the next read.
SMALL_READ = 64 << 10
SMALL_READ_PAUSE = 0.002
TAIL = 4096
PROGRESS_EVERY = 0.5
#: Default for ``stall_timeout``: no byte read from the dump and none written to the upload for this
#: long means a dead peer (a frozen server, a remote that stopped answering): the run fails.
DEFAULT_STALL_TIMEOUT = 45.0

#: Progress callback: called from the relay thread with the bytes relayed so far.
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class TransferStats:
    """What went through the relay."""

    size: int
    sha256: str
    tail: bytes
    #: bytes the dump tool wrote (differs from *size* when dbstash compressed the stream)
    dump_size: int = 0


class Relay:
    """Copies *src_fd* to *dst_fd* until end of input, hashing and counting. Runs in a worker thread.

    It never closes *dst_fd*: whether the upload sees end of input is the commit decision's call.
    """

    def __init__(
        self,
        src_fd: int,
        dst_fd: int,
        progress: Progress | None = None,
        compressor: Compressor | None = None,
        *,
        hashing: bool = True,
    ) -> None:
        self.src_fd = src_fd
        self.hashing = hashing
        self.dst_fd = dst_fd
        self.progress = progress
        self.compressor = compressor
        self.done = threading.Event()
        self.stopped = False
        #: monotonic time of the last byte read or written; the stall watchdog reads it
        self.last_active = time.monotonic()
        #: which side the relay is waiting for: "dump" (reading) or "upload" (writing)
        self.waiting = "dump"
        #: what reads *dst_fd*, for the message when it stops reading
        self.reader = "rclone"

    def run(self) -> TransferStats:
        try:
            return self._run()
        finally:
            self.done.set()

    def _run(self) -> TransferStats:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        digest = hashlib.sha256()
        total = 0  # bytes read from the dump
        stored = 0  # bytes written to the upload (and hashed)
        tail = b""
        next_progress = time.monotonic() + PROGRESS_EVERY
        src = self.src_fd
        compressor = self.compressor
        eof = False
        while not eof:
            n = 0
            while n < CHUNK:  # wait for a full chunk: fewer, bigger writes downstream
                self.waiting = "dump"
                got = os.readv(src, [view[n:]])
                if got == 0:
                    eof = True
                    break
                n += got
                self.last_active = time.monotonic()
                if got < SMALL_READ and n < CHUNK:
                    # a slow writer (redis-cli writes 4 KiB at a time): let the 1 MiB pipe fill
                    # instead of waking up for every few KiB; a fast one never gets here
                    time.sleep(SMALL_READ_PAUSE)
            if n == 0:
                break
            chunk = view[:n]
            out: bytes | memoryview = chunk if compressor is None else compressor.compress(chunk)
            stored += self._write(out, digest)
            total += n
            tail = (tail + bytes(chunk[-TAIL:]))[-TAIL:] if n < TAIL else bytes(chunk[-TAIL:])
            if self.progress is not None and time.monotonic() >= next_progress:
                self.progress(total)
                next_progress = time.monotonic() + PROGRESS_EVERY
        if compressor is not None:
            stored += self._write(compressor.flush(), digest)
        if self.progress is not None:
            self.progress(total)
        return TransferStats(stored, digest.hexdigest(), tail, dump_size=total)

    def _write(self, data: bytes | memoryview, digest: hashlib._Hash) -> int:
        """Hash *data* and write all of it to the upload; returns its length."""
        n = len(data)
        if not n:
            return 0
        if self.hashing:
            digest.update(data)
        view = memoryview(data)
        off = 0
        self.waiting = "upload"
        while off < n:
            if self.stopped:
                raise UploadFailed("upload interrupted")
            try:
                off += os.write(self.dst_fd, view[off:])
            except BrokenPipeError:
                what = "the upload failed" if self.reader == "rclone" else "it failed"
                raise UploadFailed(f"{self.reader} stopped reading ({what})") from None
            self.last_active = time.monotonic()
        return n


async def relay_watched(relay: Relay, stall_timeout: float | None) -> TransferStats:
    """Run *relay* in a worker thread; fail if no byte moves for *stall_timeout* seconds.

    A frozen database server or a remote that stopped answering leaves the relay blocked in a read
    or a write forever: the watchdog notices and raises, and the caller's clean-up stops both
    processes, which unblocks the thread.
    """
    if not stall_timeout:
        return await anyio.to_thread.run_sync(relay.run, abandon_on_cancel=True)
    done: list[tuple[TransferStats | None, BaseException | None]] = []

    def guarded() -> tuple[TransferStats | None, BaseException | None]:
        # the relay's own failure comes back as a value: raised inside the task group it would
        # reach the caller wrapped in an exception group
        try:
            return relay.run(), None
        except BaseException as exc:
            return None, exc

    async def watch(scope: anyio.CancelScope) -> None:
        while True:
            await anyio.sleep(min(1.0, stall_timeout / 4))
            if time.monotonic() - relay.last_active >= stall_timeout:
                scope.cancel()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        done.append(await anyio.to_thread.run_sync(guarded, abandon_on_cancel=True))
        tg.cancel_scope.cancel()
    if done:
        stats, error = done[0]
        if error is not None:
            raise error
        assert stats is not None
        return stats
    raise stalled_error(stall_timeout, relay.waiting)


def stalled_error(stall_timeout: float, waiting: str) -> DumpFailed | UploadFailed:
    if waiting == "upload":
        return UploadFailed(
            f"the upload accepted no data for {stall_timeout:g}s (the remote stopped answering?): aborted"
        )
    return DumpFailed(
        f"the dump tool produced no data for {stall_timeout:g}s (the database server stopped answering?): aborted"
    )

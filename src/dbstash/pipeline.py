"""The Pipeline: dump process -> relay (sha256, byte count, progress) -> upload, then commit or abort.

The hot loop runs on raw file descriptors in one worker thread: full 1 MiB reads from a 1 MiB pipe,
one hash update, one write. The field notes measured a per-chunk anyio ``receive()``/``send()`` relay at
1.5x the shell pipeline and this loop at ~1.05x; everything around it (processes, timeout,
cancellation, commit decision) is structured anyio code.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from dbstash.compression import Compressor, StreamCompression
from dbstash.engines.base import DumpCommand, Engine
from dbstash.errors import BackupTimeout, DumpFailed, UploadFailed
from dbstash.logs import get_logger
from dbstash.process import ChildProcess, grow_pipe
from dbstash.redact import Redactor
from dbstash.storage.base import Storage, Upload

log = get_logger("dbstash.pipeline")

CHUNK = 1 << 20
#: A read shorter than this means the writer is slower than the relay: pause before the next read.
SMALL_READ = 64 << 10
SMALL_READ_PAUSE = 0.002
TAIL = 4096
PROGRESS_EVERY = 0.5
#: How long a stopped dump gets to exit after SIGTERM before SIGKILL.
DUMP_STOP_GRACE = 5.0

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


@dataclass(frozen=True, slots=True)
class Transfer:
    """A committed transfer: the relay's numbers and the dump command that produced them."""

    stats: TransferStats
    command: DumpCommand


class Relay:
    """Copies *src_fd* to *dst_fd* until end of input, hashing and counting. Runs in a worker thread.

    It never closes *dst_fd*: whether the upload sees end of input is the commit decision's call.
    """

    def __init__(
        self, src_fd: int, dst_fd: int, progress: Progress | None = None, compressor: Compressor | None = None
    ) -> None:
        self.src_fd = src_fd
        self.dst_fd = dst_fd
        self.progress = progress
        self.compressor = compressor
        self.done = threading.Event()
        self.stopped = False

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
                got = os.readv(src, [view[n:]])
                if got == 0:
                    eof = True
                    break
                n += got
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
        digest.update(data)
        view = memoryview(data)
        off = 0
        while off < n:
            if self.stopped:
                raise UploadFailed("upload interrupted")
            try:
                off += os.write(self.dst_fd, view[off:])
            except BrokenPipeError:
                raise UploadFailed("rclone stopped reading (the upload failed)") from None
        return n


async def transfer(
    engine: Engine,
    command: DumpCommand | Callable[[], Awaitable[DumpCommand]],
    storage: Storage,
    name: str,
    *,
    redactor: Redactor,
    timeout: float | None = None,
    progress: Progress | None = None,
    on_started: Callable[[ChildProcess, Upload], None] | None = None,
    compression: StreamCompression | None = None,
    check_tail: bool = True,
) -> Transfer:
    """Run *command*, stream its stdout to *storage* under *name*, and commit only on full success.

    *command* may be an async callable that builds it (probing the server): it then runs after the
    upload process was started, so rclone's start-up overlaps the probe. With *compression* the
    stream is compressed on the way; size and sha256 then describe the stored (compressed) bytes.

    Raises:
        DumpFailed: the dump tool exited non-zero, was killed, or wrote an incomplete dump.
        UploadFailed: rclone failed, stopped early, or the remote holds a different size.
        BackupTimeout: *timeout* seconds passed; dump and upload were stopped and the upload aborted.

    Cancellation of the surrounding task (SIGTERM in the CLI) propagates as the event loop's own
    cancellation exception, after the same clean-up: dump stopped, upload aborted.

    In every failure case nothing is left under *name* (a partial name at most, if the abort's own
    delete failed) and an existing object called *name* is untouched.
    """
    upload = await storage.begin_upload(name)
    dump: ChildProcess | None = None
    relay: Relay | None = None
    committed = False
    try:
        with anyio.fail_after(timeout):
            try:
                if callable(command):
                    command = await command()
                dump = command.start(redactor, stdout=subprocess.PIPE)
                assert dump.popen.stdout is not None
                src_fd = dump.popen.stdout.fileno()
                grow_pipe(src_fd)
                compressor = compression.compressor() if compression is not None else None
                relay = Relay(src_fd, upload.fileno(), progress, compressor)
                if on_started is not None:
                    on_started(dump, upload)
                stats = await anyio.to_thread.run_sync(relay.run, abandon_on_cancel=True)
                status = await dump.wait()
                if status != 0:
                    raise DumpFailed(
                        f"{dump.name} {dump.describe_exit(status)}",
                        exit_status=status,
                        stderr_tail=dump.stderr.text(),
                    )
                reason = engine.check_output_tail(stats.tail, command) if check_tail else None
                if reason:
                    raise DumpFailed(reason, exit_status=0, stderr_tail=dump.stderr.text())
                await upload.commit(stats.size)
                committed = True
                return Transfer(stats, command)
            except UploadFailed as exc:
                # The dump usually dies of the broken pipe too; the upload's reason is the real one.
                detail = upload.failure_detail()
                if detail and detail not in str(exc):
                    raise UploadFailed(str(exc), stderr_tail=detail) from None
                raise
            finally:
                if not committed:
                    with anyio.CancelScope(shield=True):
                        await _cleanup(dump, relay, upload)
    except TimeoutError:
        raise BackupTimeout(f"the backup exceeded its timeout of {timeout:g}s and was aborted") from None
    except anyio.get_cancelled_exc_class():
        log.warning("backup cancelled: upload aborted")
        raise
    finally:
        if dump is not None and dump.popen.stdout is not None:
            dump.popen.stdout.close()


async def _cleanup(dump: ChildProcess | None, relay: Relay | None, upload: Upload) -> None:
    """Stop everything in the order that keeps the commit protocol: dump, upload, relay, then abort."""
    if relay is not None:
        relay.stopped = True
    if dump is not None:
        await dump.stop(grace=DUMP_STOP_GRACE)
    await upload.interrupt()
    if relay is not None:
        # both ends are dead now: the relay thread ends at once (EOF or EPIPE)
        await anyio.to_thread.run_sync(relay.done.wait, 30.0, abandon_on_cancel=True)
    await upload.abort()


__all__ = ["Relay", "Transfer", "TransferStats", "transfer"]

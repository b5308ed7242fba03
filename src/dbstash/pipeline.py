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
#: How long a stopped dump, or a stopped upload, gets to exit after SIGTERM before SIGKILL.
STOP_GRACE = 2.0
#: The whole abort (stop both processes, remove the partial upload) fits in this many seconds, so a
#: SIGTERM is honoured well inside Docker's 10 s stop grace even when the remote is dead. A partial
#: left behind is removed by the next successful run or by ``prune`` (see ``stale_partials``).
ABORT_BUDGET = 5.0
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


@dataclass(frozen=True, slots=True)
class Transfer:
    """A committed transfer: the relay's numbers, the dump command that produced them, the name it got."""

    stats: TransferStats
    command: DumpCommand
    name: str


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
        #: monotonic time of the last byte read or written; the stall watchdog reads it
        self.last_active = time.monotonic()
        #: which side the relay is waiting for: "dump" (reading) or "upload" (writing)
        self.waiting = "dump"

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
                raise UploadFailed("rclone stopped reading (the upload failed)") from None
            self.last_active = time.monotonic()
        return n


async def _relay_watched(relay: Relay, stall_timeout: float | None) -> TransferStats:
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
    if relay.waiting == "upload":
        raise UploadFailed(
            f"the upload accepted no data for {stall_timeout:g}s (the remote stopped answering?): aborted"
        )
    raise DumpFailed(
        f"the dump tool produced no data for {stall_timeout:g}s (the database server stopped answering?): aborted"
    )


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
    alternative: str | None = None,
    before_publish: Callable[[str, TransferStats, DumpCommand], Awaitable[None]] | None = None,
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
) -> Transfer:
    """Run *command*, stream its stdout to *storage* under *name*, and commit only on full success.

    *command* may be an async callable that builds it (probing the server): it then runs after the
    upload process was started, so rclone's start-up overlaps the probe. With *compression* the
    stream is compressed on the way; size and sha256 then describe the stored (compressed) bytes.

    *alternative*: the name to take if *name* is already taken on the remote (the commit never
    replaces what this run did not create). *before_publish* is called with the chosen name, the
    relay's numbers and the command once every byte is confirmed and before the backup appears under
    its name (it writes the manifest; if it raises, nothing is published). *stall_timeout*: seconds
    without a byte moving before the run fails (None: never).

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
                stats = await _relay_watched(relay, stall_timeout)
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
                built = command

                async def publishing(final: str) -> None:
                    if before_publish is not None:
                        await before_publish(final, stats, built)

                final = await upload.commit(stats.size, alternative=alternative, before_publish=publishing)
                committed = True
                return Transfer(stats, command, final)
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
    """Stop everything in the order that keeps the commit protocol: dump and upload, relay, then abort.

    Bounded by :data:`ABORT_BUDGET`: both processes get SIGTERM at once (SIGKILL after
    :data:`STOP_GRACE`), and removing the partial upload gets what is left of the budget.
    """
    deadline = time.monotonic() + ABORT_BUDGET
    if relay is not None:
        relay.stopped = True
    async with anyio.create_task_group() as tg:
        if dump is not None:
            tg.start_soon(dump.stop, STOP_GRACE)
        tg.start_soon(upload.interrupt)
    if relay is not None:
        # both ends are dead now: the relay thread ends at once (EOF or EPIPE)
        await anyio.to_thread.run_sync(relay.done.wait, STOP_GRACE, abandon_on_cancel=True)
    await upload.abort(timeout=max(1.0, deadline - time.monotonic()))


__all__ = ["Relay", "Transfer", "TransferStats", "transfer"]

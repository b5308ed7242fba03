"""FanOut: one stream into several sinks at once, each upload committed by its own rules.

The bytes are read once and written to every destination; back-pressure follows the slowest one and
memory stays at one chunk. A destination that fails, or accepts nothing for *stall_timeout*, is
dropped and the others go on. At the end each destination that received every byte commits as it
would alone (its own name, its own manifest); the run succeeds when at least *required* of them did.

When every destination's upload advertises a descriptor (the rclone uploads), the FanOut's upload
advertises one too, the write end of its own pipe: the pipeline's relay thread writes there, and the
FanOut's thread copies each chunk to the destinations' pipes with non-blocking writes, so a
stalled destination is seen (and dropped) while the others keep going. Otherwise ``send`` writes
each chunk to the destinations concurrently.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
from anyio.streams.file import FileStreamAttribute

from dbstash.errors import DbstashError, UploadFailed
from dbstash.logs import get_logger
from dbstash.parts.process import grow_pipe, write_all
from dbstash.parts.relay import CHUNK, DEFAULT_STALL_TIMEOUT
from dbstash.parts.sink import BeforePublish, Committed, Copy, Sink, SinkUpload, SizeHint

log = get_logger("dbstash.fanout")

#: With several destinations the pipeline's own stall watchdog waits this much longer than the
#: FanOut's: a destination that stalls is dropped (and the others go on) before the run would fail.
FANOUT_STALL_GRACE = 5.0


class DestinationsFailed(UploadFailed):
    """Fewer destinations than required committed; `copies` says what happened to each (those
    that committed hold a complete, valid backup)."""

    def __init__(self, message: str, copies: tuple[Copy, ...]) -> None:
        super().__init__(message)
        self.copies = copies


class FanOut(Sink):
    """A sink that writes one stream to every one of *sinks* at once.

    *labels* name the destinations in results and messages (default: ``repr`` of each sink);
    *required*: how many of them must commit for the upload to succeed (default: all of them).
    Copies that committed stay even when too few did (they are complete); the
    [`UploadFailed`][dbstash.UploadFailed] raised then says what happened to each destination. The
    [`Committed`][dbstash.Committed] of a successful commit is the first committed destination's, with
    [`copies`][dbstash.Committed] listing every destination's outcome.

    Examples:
        >>> import anyio, dbstash
        >>> a, b = dbstash.MemorySink(), dbstash.MemorySink()
        >>> both = dbstash.FanOut([a, b], labels=["a", "b"])
        >>> done = anyio.run(dbstash.Pipeline(dbstash.CommandSource(["echo", "hi"]), both).run, "x.txt")
        >>> a.objects["x.txt"] == b.objects["x.txt"] == b"hi\\n"
        True
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        labels: Sequence[str] | None = None,
        required: int | None = None,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
    ) -> None:
        if not sinks:
            raise ValueError("sinks: at least one sink")
        if labels is not None and len(labels) != len(sinks):
            raise ValueError("labels: one label per sink")
        if required is not None and not 1 <= required <= len(sinks):
            raise ValueError(f"required: from 1 to {len(sinks)} (the number of sinks)")
        self.sinks = tuple(sinks)
        self.labels = tuple(labels) if labels is not None else tuple(repr(s) for s in sinks)
        self.required = required if required is not None else len(sinks)
        self.stall_timeout = stall_timeout

    async def begin(
        self, name: str, *, alternative: str | None = None, size_hint: SizeHint | None = None
    ) -> FanOutUpload:
        """Begin an upload on every sink at once; one that cannot begin, or does not within the stall
        timeout, is dropped (as long as enough remain)."""
        uploads: list[SinkUpload | None] = [None] * len(self.sinks)
        errors: dict[int, str] = {}

        async def one(i: int) -> None:
            try:
                with anyio.fail_after(self.stall_timeout):  # a frozen destination holds the others up no longer
                    uploads[i] = await self.sinks[i].begin(name, alternative=alternative, size_hint=size_hint)
            except TimeoutError:
                errors[i] = f"did not begin within {self.stall_timeout:g}s (the remote stopped answering?)"
            except (DbstashError, OSError) as exc:
                errors[i] = str(exc)

        try:
            async with anyio.create_task_group() as tg:
                for i in range(len(self.sinks)):
                    tg.start_soon(one, i)
        except BaseException:  # cancelled (a signal) while beginning: what began is aborted, not left running
            with anyio.CancelScope(shield=True):
                async with anyio.create_task_group() as tg:
                    for upload in uploads:
                        if upload is not None:
                            tg.start_soon(upload.abort)
            raise
        upload = FanOutUpload(self, name, uploads, errors)
        if len(errors) == len(self.sinks):  # fewer than required go on all the same: their copies stay
            raise upload.shortfall("could not begin")
        for i, why in errors.items():
            log.warning("destination %s dropped: %s", self.labels[i], why)
        return upload


class FanOutUpload(SinkUpload):
    """The upload of a [`FanOut`][dbstash.FanOut]: it owns the destinations' uploads and, on the fast path, its
    thread."""

    def __init__(self, fanout: FanOut, name: str, uploads: Sequence[SinkUpload | None], errors: dict[int, str]) -> None:
        self.name = name
        self.uploads = list(uploads)
        self.labels = fanout.labels
        self.required = fanout.required
        self.stall_timeout = fanout.stall_timeout
        #: why each dropped destination was dropped (by index)
        self.errors = dict(errors)
        self._lock = threading.Lock()
        self._done = False
        fds = {i: _fd(u) for i, u in enumerate(self.uploads) if u is not None}
        self._tee: _Tee | None = None
        if fds and all(fd is not None for fd in fds.values()):
            self._tee = _Tee(self, {i: fd for i, fd in fds.items() if fd is not None})

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        if self._tee is None:
            return {}
        fd = self._tee.write_fd
        return {FileStreamAttribute.fileno: lambda: fd}

    def live(self) -> list[int]:
        """The destinations still in the run."""
        with self._lock:
            return [i for i, u in enumerate(self.uploads) if u is not None and i not in self.errors]

    def drop(self, i: int, why: str) -> None:
        """Take destination *i* out of the run (its upload is aborted at the commit or the abort)."""
        with self._lock:
            if i in self.errors:
                return
            self.errors[i] = why
        log.warning("destination %s dropped: %s", self.labels[i], why)

    def shortfall(self, what: str) -> UploadFailed:
        """The error of a run that kept fewer than *required* destinations."""
        reasons = "; ".join(f"{self.labels[i]}: {why}" for i, why in sorted(self.errors.items()))
        total = len(self.uploads)
        need = "all" if self.required == total else f"at least {self.required}"
        return UploadFailed(
            f"{what} on {total - len(self.errors)} of {total} destinations ({need} required): {reasons}"
        )

    async def send(self, item: bytes) -> None:
        if self._tee is not None:
            try:
                await write_all(self._tee.write_fd, item)
            except BrokenPipeError:
                raise self.shortfall("the upload failed") from None
            return

        async def one(i: int, upload: SinkUpload) -> None:
            try:
                with anyio.fail_after(self.stall_timeout):
                    await upload.send(item)
            except TimeoutError:
                self.drop(i, f"accepted no data for {self.stall_timeout:g}s")
            except DbstashError as exc:
                self.drop(i, str(exc))

        async with anyio.create_task_group() as tg:
            for i in self.live():
                upload = self.uploads[i]
                assert upload is not None
                tg.start_soon(one, i, upload)
        if not self.live():
            raise self.shortfall("the upload failed")

    async def commit(self, size: int, *, before_publish: BeforePublish | None = None) -> Committed:
        """Commit every destination that received all *size* bytes, at once; drop the others."""
        if self._tee is not None:
            await self._tee.finish()
            for i, sent in self._tee.sent.items():
                if sent != size and i not in self.errors:
                    self.drop(i, f"received {sent} of {size} bytes")
        done: dict[int, Committed] = {}

        async def one(i: int, upload: SinkUpload) -> None:
            try:
                done[i] = await upload.commit(size, before_publish=before_publish)
            except DbstashError as exc:
                self.drop(i, str(exc))

        dropped = sorted(self.errors)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._abort, dropped, None)  # while the others commit
            for i in self.live():
                upload = self.uploads[i]
                assert upload is not None
                tg.start_soon(one, i, upload)
        await self._abort([i for i in self.errors if i not in dropped], None)  # those whose commit failed
        self._done = True
        copies = tuple(Copy(self.labels[i], done.get(i), self.errors.get(i)) for i in range(len(self.uploads)))
        if len(done) < self.required:
            raise DestinationsFailed(str(self.shortfall("committed")), copies)
        first = done[min(done)]
        self.committed = True
        return Committed(first.name, first.size, first.listing, copies=copies)

    async def _abort(self, which: Sequence[int], timeout: float | None) -> None:
        """Abort the uploads *which* (not committed ones) at once, each within *timeout*."""
        async with anyio.create_task_group() as tg:
            for i in which:
                upload = self.uploads[i]
                if upload is not None and not upload.committed:
                    tg.start_soon(functools.partial(upload.abort, timeout=timeout))

    async def interrupt(self) -> None:
        async with anyio.create_task_group() as tg:
            for upload in self.uploads:
                if upload is not None:
                    tg.start_soon(upload.interrupt)

    async def abort(self, *, timeout: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        if self._tee is not None:
            self._tee.stop()
        await self._abort(range(len(self.uploads)), timeout)
        if self._tee is not None:
            await self._tee.finish()

    def failure_detail(self) -> str:
        return "; ".join(f"{self.labels[i]}: {why}" for i, why in sorted(self.errors.items()))


def _fd(upload: SinkUpload) -> int | None:
    fd: int | None = upload.extra(FileStreamAttribute.fileno, None)  # noqa: S610 - anyio typed attributes
    return fd


#: How often the copying thread looks at the clock and the stop flag while a destination is full.
POLL_MS = 200


class _Tee:
    """The fast path's thread: read the FanOut's own pipe, write each chunk to every live destination's pipe.

    Non-blocking writes under ``poll``: a destination that accepts nothing for the stall timeout is
    dropped while the others are served. The thread closes its read end when it ends, so a writer
    blocked on the pipe sees a broken pipe once no destination is left.
    """

    def __init__(self, owner: FanOutUpload, fds: dict[int, int]) -> None:
        self.owner = owner
        self.fds = fds
        self.read_fd, self.write_fd = os.pipe()
        grow_pipe(self.write_fd)
        self.sent = dict.fromkeys(fds, 0)
        self.stopped = False
        self.thread = threading.Thread(target=self.run, name="dbstash-fanout", daemon=True)
        self.thread.start()

    def run(self) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            for fd in self.fds.values():
                os.set_blocking(fd, False)
            while not self.stopped:
                n = os.readv(self.read_fd, [view])
                if n == 0:
                    return
                self._write_all(view[:n])
                if not self.owner.live():
                    return  # closing the read end tells the writer: nothing is left to write to
        finally:
            os.close(self.read_fd)

    def _write_all(self, chunk: memoryview) -> None:
        """Write *chunk* to every live destination; drop those that fail or stall."""
        owner, stall = self.owner, self.owner.stall_timeout
        pending = {i: 0 for i in owner.live()}
        last = dict.fromkeys(pending, time.monotonic())
        poller = select.poll()
        for i in pending:
            poller.register(self.fds[i], select.POLLOUT)
        while pending and not self.stopped:
            ready = {fd for fd, _ in poller.poll(POLL_MS)}
            now = time.monotonic()
            for i in list(pending):
                fd = self.fds[i]
                if fd in ready:
                    try:
                        pending[i] += os.write(fd, chunk[pending[i] :])
                        last[i] = now
                    except BlockingIOError:
                        pass
                    except OSError as exc:  # EPIPE: its rclone is gone
                        owner.drop(i, f"stopped reading ({exc.strerror})")
                if i in owner.errors:
                    pass
                elif pending[i] == len(chunk):
                    self.sent[i] += len(chunk)
                elif stall and now - last[i] >= stall:
                    owner.drop(i, f"accepted no data for {stall:g}s (the remote stopped answering?)")
                else:
                    continue
                del pending[i]
                poller.unregister(fd)

    def stop(self) -> None:
        """Stop copying (an abort): the thread ends at its next look at the flag or its next read."""
        self.stopped = True
        with contextlib.suppress(OSError):
            os.close(self.write_fd)
        self.write_fd = -1

    async def finish(self) -> None:
        """End of input: close the write end and wait until the thread has copied everything."""
        if self.write_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.write_fd)
            self.write_fd = -1
        await anyio.to_thread.run_sync(self.thread.join, abandon_on_cancel=True)


__all__ = ["FANOUT_STALL_GRACE", "Copy", "DestinationsFailed", "FanOut", "FanOutUpload"]

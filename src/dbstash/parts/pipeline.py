"""The Pipeline: dump process -> relay (sha256, byte count, progress) -> upload, then commit or abort.

(Over 400 lines on purpose: the commit protocol, both relay paths and the bounded abort in one place.)

The hot loop runs on raw file descriptors in one worker thread: full 1 MiB reads from a 1 MiB pipe,
one hash update, one write. The field notes measured a per-chunk anyio ``receive()``/``send()`` relay at
1.5x the shell pipeline and this loop at ~1.05x; everything around it (processes, timeout,
cancellation, commit decision) is structured anyio code.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import anyio
from anyio.streams.file import FileStreamAttribute

from dbstash.engines.base import DumpCommand
from dbstash.errors import BackupTimeout, UploadFailed
from dbstash.logs import get_logger
from dbstash.parts.compression import Compressor
from dbstash.parts.process import grow_pipe, write_all
from dbstash.parts.relay import (
    DEFAULT_STALL_TIMEOUT,
    TAIL,
    Progress,
    Relay,
    TransferStats,
    relay_watched,
    stalled_error,
)
from dbstash.parts.sink import Copy, RemoteEntry, Sink, SinkUpload, SizeHint
from dbstash.parts.source import ProcessStream, Source, SourceAttribute, SourceStream
from dbstash.parts.transforms import Compress, ProcessTransform, Progress as ProgressTransform, Transform
from dbstash.redact import GLOBAL_REDACTOR, Redactor

log = get_logger("dbstash.pipeline")

#: How long a stopped dump, or a stopped upload, gets to exit after SIGTERM before SIGKILL.
STOP_GRACE = 2.0
#: The whole abort (stop both processes, remove the partial upload) fits in this many seconds, so a
#: SIGTERM is honoured well inside Docker's 10 s stop grace even when the remote is dead. A partial
#: left behind is removed by the next successful run or by ``prune`` (see ``stale_partials``).
ABORT_BUDGET = 5.0


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """A committed run of a [`Pipeline`][dbstash.Pipeline].

    Attributes:
        name: the name the backup got (the one asked for, or the alternative when it was taken).
        size: bytes stored (confirmed by the sink before the commit).
        sha256: hex digest of exactly the stored bytes.
        source_size: bytes the source produced (more than *size* when a transform compressed them).
        fast_path: whether the bytes went through the raw-descriptor relay thread.
        listing: the destination folder's listing, when the commit made one (see [`Committed`][dbstash.Committed]).
        command: the command the source ran, when it advertised one (``SourceAttribute.command``:
            [`DumpSource`][dbstash.DumpSource], [`CommandSource`][dbstash.CommandSource]).
        copies: into a [`FanOut`][dbstash.FanOut]: what each destination made of it (see
            [`Committed`][dbstash.Committed]).
    """

    name: str
    size: int
    sha256: str
    source_size: int
    fast_path: bool
    listing: tuple[RemoteEntry, ...] | None = field(default=None, repr=False)
    command: DumpCommand | None = field(default=None, repr=False)
    copies: tuple[Copy, ...] = field(default=(), repr=False)


class Pipeline:
    """Source -> transforms -> sink, then commit only on full success; anything else aborts.

    One protocol on both relay paths: relay every byte (counting it and hashing what is stored),
    await the source's verdict, then ``commit``; a failure, the *timeout*, a stall of
    *stall_timeout* seconds or cancellation stops the source and aborts the upload, within
    `ABORT_BUDGET` seconds. When the source and the upload both advertise a file descriptor
    (``FileStreamAttribute.fileno``) and every transform can run in the relay thread
    ([`Compress`][dbstash.Compress], [`Progress`][dbstash.Progress]), the bytes go through the raw-fd relay
    thread; otherwise through an async loop.

    Examples:
        >>> import anyio, dbstash
        >>> async def main() -> dbstash.PipelineResult:
        ...     sink = dbstash.MemorySink()
        ...     source = dbstash.CommandSource(["seq", "1000"])
        ...     return await dbstash.Pipeline(source, sink, [dbstash.Compress("zstd")]).run("n.txt.zst")
        >>> result = anyio.run(main)
        >>> result.name, result.source_size
        ('n.txt.zst', 3893)
    """

    def __init__(
        self,
        source: Source,
        sink: Sink,
        transforms: Sequence[Transform] = (),
        *,
        timeout: float | None = None,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        redactor: Redactor | None = None,
        size_hint: SizeHint | None = None,
    ) -> None:
        self.size_hint = size_hint
        self.source = source
        self.sink = sink
        self.transforms = tuple(transforms)
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self.redactor = redactor or GLOBAL_REDACTOR

    async def _start(self, name: str, alternative: str | None, started: _Started) -> None:
        """Begin the upload and start the source at the same time, into *started* (whatever started is
        there for the clean-up when the other failed)."""
        failure: list[BaseException] = []

        async def begin() -> None:
            try:
                started.upload = await self.sink.begin(name, alternative=alternative, size_hint=self.size_hint)
            except Exception as exc:
                failure.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(begin)
            try:
                started.stream = await self.source.start(self.redactor)
            except Exception as exc:
                failure.append(exc)
        if failure:
            raise failure[0]

    async def run(
        self,
        name: str,
        *,
        alternative: str | None = None,
        before_publish: Callable[[str, PipelineResult], Awaitable[Mapping[str, bytes] | None]] | None = None,
        on_started: Callable[[SourceStream, SinkUpload], None] | None = None,
    ) -> PipelineResult:
        """Relay the source into the sink as *name* and commit; returns what was committed.

        *alternative*: the name to take if *name* is taken on the sink (a run never replaces what it
        did not create). *before_publish* is called with the chosen name and the numbers once every
        byte is confirmed, before the backup appears under its name; the small objects it returns
        (name -> bytes: the manifest) the sink stores beside the backup first. If it raises, or they
        cannot be stored, nothing is published.

        Raises:
            DumpFailed: the source failed (its verdict), or produced nothing for *stall_timeout*.
            UploadFailed: the sink failed, stopped reading, or holds another size.
            BackupTimeout: *timeout* seconds passed.

        Cancellation propagates after the same clean-up.
        """
        stream: SourceStream | None = None
        relay: Relay | None = None
        committed = False
        upload: SinkUpload | None = None
        started = _Started()
        try:
            with anyio.fail_after(self.timeout):
                try:
                    # the upload begins while the source starts (on object stores it first claims its
                    # name: with a dead remote the dump is already running, and is stopped with it)
                    await self._start(name, alternative, started)
                    upload, stream = started.upload, started.stream
                    assert upload is not None
                    assert stream is not None
                    if on_started is not None:
                        on_started(stream, upload)
                    src_fd = stream.extra(FileStreamAttribute.fileno, None)  # noqa: S610 - anyio typed attributes
                    dst_fd = upload.extra(FileStreamAttribute.fileno, None)  # noqa: S610
                    plan = _relay_plan(self.transforms)
                    stage = _process_stage(self.transforms)
                    if stage is not None:
                        stats, fast = await _relay_through(
                            stream, upload, stage, self.stall_timeout, redactor=self.redactor, started=started
                        )
                        tail: bytes | None = stats.tail
                    elif src_fd is not None and dst_fd is not None and plan is not None:
                        compressor, progress = plan
                        relay = Relay(src_fd, dst_fd, progress, compressor)
                        stats = await relay_watched(relay, self.stall_timeout)
                        tail, fast = stats.tail, True
                    else:
                        stats = await _relay_async(stream, upload, self.transforms, self.stall_timeout)
                        tail, fast = None, False
                    await stream.verdict(tail)
                    command = stream.extra(SourceAttribute.command, None)  # noqa: S610 - anyio typed attributes
                    result = PipelineResult(name, stats.size, stats.sha256, stats.dump_size, fast, command=command)

                    async def publishing(final: str) -> Mapping[str, bytes] | None:
                        if before_publish is None:
                            return None
                        return await before_publish(final, replace(result, name=final))

                    done = await upload.commit(stats.size, before_publish=publishing)
                    committed = True
                    return replace(result, name=done.name, listing=done.listing, copies=done.copies)
                except UploadFailed as exc:
                    # the source usually dies of the broken pipe too; the upload's reason is the real one
                    if upload is None:
                        raise
                    detail = upload.failure_detail()
                    if detail and detail not in str(exc):
                        raise UploadFailed(str(exc), stderr_tail=detail) from None
                    raise
                finally:
                    if not committed:
                        stream, upload = started.stream, started.upload
                        with anyio.CancelScope(shield=True):
                            await _cleanup(stream, relay, upload, started)
        except TimeoutError:
            raise BackupTimeout(f"the backup exceeded its timeout of {self.timeout:g}s and was aborted") from None
        except anyio.get_cancelled_exc_class():
            log.warning("backup cancelled: upload aborted")
            raise
        finally:
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()


def _relay_plan(transforms: Sequence[Transform]) -> tuple[Compressor | None, Progress | None] | None:
    """What the relay thread runs for *transforms* (one compressor, progress callbacks), or None if it cannot."""
    compressor: Compressor | None = None
    callbacks: list[Progress] = []
    for t in transforms:
        if isinstance(t, Compress) and compressor is None:
            compressor = t.compression.compressor()
        elif isinstance(t, ProgressTransform):
            callbacks.append(t.callback)
        else:
            return None
    if not callbacks:
        return compressor, None
    if len(callbacks) == 1:
        return compressor, callbacks[0]

    def every(done: int) -> None:
        for cb in callbacks:
            cb(done)

    return compressor, every


def _process_stage(transforms: Sequence[Transform]) -> tuple[Sequence[Transform], ProcessTransform] | None:
    """(the transforms before it, the process transform) when there is one; it must come last."""
    for i, t in enumerate(transforms):
        if isinstance(t, ProcessTransform):
            if i != len(transforms) - 1:
                raise ValueError(f"transforms: {type(t).__name__} runs as a process and must be the last one")
            return transforms[:i], t
    return None


class _Sender(Protocol):
    async def send(self, item: bytes) -> None: ...


class _PipeWriter:
    """The write end of a filter's stdin, for the async relay (``send``) and the relay thread (``fd``)."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd: int | None = fd
        self.name = name

    async def send(self, item: bytes) -> None:
        assert self.fd is not None
        try:
            await write_all(self.fd, item)
        except BrokenPipeError:
            raise UploadFailed(f"{self.name} stopped reading (it failed)") from None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class _Stage:
    """A running filter stage: the process's output stream and the write end of its input."""

    out: ProcessStream
    writer: _PipeWriter

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.out.aclose()
            self.writer.close()


async def _relay_through(
    stream: SourceStream,
    upload: SinkUpload,
    stage: tuple[Sequence[Transform], ProcessTransform],
    stall_timeout: float | None,
    *,
    redactor: Redactor,
    started: _Started,
) -> tuple[TransferStats, bool]:
    """source -> the transforms before the process (compression, progress) -> the process (age) ->
    hash and count -> upload. Two relays at once, each a raw-descriptor thread where both its ends
    have descriptors. The source's tail and size come from the first, the stored size and sha256 from
    the second. Returns the stats and whether both relays took the fast path. On a failure the
    pipeline's clean-up stops the process and closes its pipes once both relays have ended."""
    before, process = stage
    r, w = os.pipe()
    try:
        grow_pipe(w)
        proc = process.command().start(redactor, stdin=r, stdout=subprocess.PIPE)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    writer = _PipeWriter(w, proc.name)
    out = ProcessStream(proc, None)
    started.stage = _Stage(out, writer)
    src_fd = stream.extra(FileStreamAttribute.fileno, None)  # noqa: S610 - anyio typed attributes
    dst_fd = upload.extra(FileStreamAttribute.fileno, None)  # noqa: S610
    plan = _relay_plan(before)
    fed: list[TransferStats] = []
    feed_error: list[BaseException] = []

    async def feed() -> None:
        try:
            if src_fd is not None and plan is not None:
                relay = Relay(src_fd, w, plan[1], plan[0], hashing=False)
                relay.reader = proc.name
                started.relays.append(relay)
                fed.append(await relay_watched(relay, stall_timeout))
            else:
                fed.append(await _relay_async(stream, writer, before, stall_timeout))
        except Exception as exc:  # handed back as a value: raised here it would come wrapped in a group
            feed_error.append(exc)
        # the feeding is over (its thread returned): the filter may see the end of its input; on a
        # failure too (the verdict decides). Cancelled, the clean-up closes it after the thread ends.
        writer.close()

    stored: TransferStats | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed)
        try:
            if dst_fd is not None:
                relay = Relay(out.fileno, dst_fd)
                started.relays.append(relay)
                stored = await relay_watched(relay, stall_timeout)
            else:
                stored = await _relay_async(out, upload, (), stall_timeout)
        except Exception as exc:  # raised as itself below, not wrapped in the task group's exception group
            feed_error.insert(0, exc)
            tg.cancel_scope.cancel()  # the feeding stops; the pipeline's clean-up ends its thread
    if feed_error:
        raise feed_error[0]
    assert stored is not None
    await out.verdict()  # the filter's exit status: anything but 0 fails the run
    await started.stage.close()
    started.stage = None
    started.relays.clear()
    source = fed[0]
    stats = TransferStats(stored.size, stored.sha256, source.tail, dump_size=source.dump_size)
    return stats, src_fd is not None and plan is not None and dst_fd is not None


async def _relay_async(
    stream: SourceStream, upload: _Sender, transforms: Sequence[Transform], stall_timeout: float | None
) -> TransferStats:
    """The general path: ``receive()`` -> transforms -> ``send()``, hashing and counting, with the stall watchdog."""
    digest = hashlib.sha256()
    total = stored = 0
    tail = b""
    last = time.monotonic()
    waiting = "dump"
    steps = [t.start() for t in transforms]

    async def put(data: bytes) -> None:
        nonlocal stored, last, waiting
        if data:
            waiting = "upload"
            digest.update(data)
            await upload.send(data)
            stored += len(data)
            last = time.monotonic()

    async def pump() -> None:
        nonlocal total, tail, last, waiting
        while True:
            waiting = "dump"
            try:
                chunk = await stream.receive()
            except anyio.EndOfStream:
                break
            last = time.monotonic()
            total += len(chunk)
            tail = (tail + chunk)[-TAIL:]
            for step in steps:
                chunk = step.feed(chunk, total)
            await put(chunk)
        for i, step in enumerate(steps):  # flush each step through the ones after it
            out = step.flush()
            for later in steps[i + 1 :]:
                out = later.feed(out, total)
            await put(out)

    if not stall_timeout:
        await pump()
    else:
        stalled = False
        error: Exception | None = None
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal stalled
                while True:
                    await anyio.sleep(min(1.0, stall_timeout / 4))
                    if time.monotonic() - last >= stall_timeout:
                        stalled = True
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            try:
                await pump()
            except Exception as exc:  # raised as itself, not wrapped in the task group's exception group
                error = exc
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        if stalled:
            raise stalled_error(stall_timeout, waiting)
    return TransferStats(stored, digest.hexdigest(), tail, dump_size=total)


@dataclass
class _Started:
    """What a run has started so far (the upload, the source, a filter stage), for its clean-up."""

    upload: SinkUpload | None = None
    stream: SourceStream | None = None
    #: a filter stage's relay threads, and the stage (its pipes are closed once they are done)
    relays: list[Relay] = field(default_factory=list)
    stage: _Stage | None = None


async def _cleanup(
    stream: SourceStream | None, relay: Relay | None, upload: SinkUpload | None, started: _Started | None = None
) -> None:
    """Stop everything in the order that keeps the commit protocol: source, filter and upload, relays, then abort.

    Bounded by `ABORT_BUDGET`: the source, a filter stage and the upload are stopped at once
    (SIGTERM, SIGKILL after `STOP_GRACE` for processes), and removing the partial upload gets
    what is left. A filter stage's pipes are closed only once its relay threads have ended: a
    descriptor closed under a thread still using it could be reused by the next open.
    """
    deadline = time.monotonic() + ABORT_BUDGET
    stage_relays = started.relays if started is not None else []
    relays = [r for r in (relay, *stage_relays) if r is not None]
    stage = started.stage if started is not None else None
    for r in relays:
        r.stopped = True
    async with anyio.create_task_group() as tg:
        if stream is not None:
            tg.start_soon(stream.stop)
        if stage is not None:
            tg.start_soon(stage.out.stop)
        if upload is not None:
            tg.start_soon(upload.interrupt)
    for r in relays:
        # every end is dead now: the relay threads end at once (EOF or EPIPE)
        await anyio.to_thread.run_sync(r.done.wait, STOP_GRACE, abandon_on_cancel=True)
    if stage is not None:
        if all(r.done.is_set() for r in stage_relays):
            await stage.close()
        else:
            log.warning("a relay thread did not end: the filter's pipes are left open")
    with anyio.move_on_after(max(1.0, deadline - time.monotonic())):
        if upload is None:  # it never began
            return
        try:
            await upload.abort(timeout=max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # abort never raises: the run's own error is the one to report
            log.warning("aborting the upload failed: %s", exc)


__all__ = ["DEFAULT_STALL_TIMEOUT", "Pipeline", "PipelineResult", "Progress", "Relay", "TransferStats"]

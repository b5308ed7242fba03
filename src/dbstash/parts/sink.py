"""Sinks: where a backup's bytes go. An upload is an anyio ``ByteSendStream`` with ``commit`` and ``abort``.

A [`Sink`][dbstash.Sink] needs one method, [`Sink.begin()`][dbstash.Sink.begin]; its upload needs three: ``send``,
``commit`` (returning [`Committed`][dbstash.Committed]) and ``abort``. Leaving an upload's ``async with`` block
without a commit aborts it. What listing, retention, manifests and restore need besides (list,
read, write, delete) is a [`Catalog`][dbstash.Catalog]; the rclone sinks and
[`MemorySink`][dbstash.MemorySink] are both.

An upload backed by a pipe advertises it through anyio's typed attribute
``FileStreamAttribute.fileno``: the pipeline then writes to the descriptor from its relay thread.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from anyio import aclose_forcefully
from anyio.abc import ByteSendStream

from dbstash.errors import UploadFailed


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """One object (or folder) directly under a remote folder."""

    name: str
    size: int
    modtime: datetime
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class Committed:
    """What an upload's commit made.

    Attributes:
        name: the name the backup got: the one asked for, or the alternative when that was taken.
        size: bytes the destination confirmed it holds.
        listing: the destination folder's listing, when the commit made one to decide the name (the
            job reuses it for retention and the stale-upload sweep instead of listing again).
        copies: a [`FanOut`][dbstash.FanOut]'s commit: every destination's outcome (the other fields
            are the first committed destination's).

    Examples:
        >>> import anyio, dbstash
        >>> async def main() -> dbstash.Committed:
        ...     upload = await dbstash.MemorySink().begin("a.txt")
        ...     await upload.send(b"hello")
        ...     return await upload.commit(5)
        >>> done = anyio.run(main)
        >>> done.name, done.size  # the listing shows the folder as the commit saw it, before the move
        ('a.txt', 5)
    """

    name: str
    size: int
    listing: tuple[RemoteEntry, ...] | None = None
    #: a [`FanOut`][dbstash.FanOut]'s commit: what each destination made of the backup, in order
    copies: tuple[Copy, ...] = ()


@dataclass(frozen=True, slots=True)
class Copy:
    """One destination of a [`FanOut`][dbstash.FanOut]: its label, its commit (None: it holds no
    backup of this run), and why it was dropped (None: it committed)."""

    destination: str
    committed: Committed | None
    error: str | None = None


#: Called with the name chosen at commit, before the backup appears under it. Returns the small
#: objects (name -> bytes: the manifest, its signature) the upload stores beside the backup first, or None.
BeforePublish = Callable[[str], Awaitable[Mapping[str, bytes] | None]]
#: An estimate of the size of the stream about to be uploaded (bytes), or None: asked only when needed.
SizeHint = Callable[[], Awaitable[int | None]]


class SinkUpload(ByteSendStream):
    """One upload: ``send`` bytes, then ``commit(size)`` to make them a backup, or ``abort()``.

    Subclasses implement `send()`, `commit()` and `abort()`; ``aclose`` (and so the end
    of an ``async with`` block) aborts unless the upload was committed. What an upload starts
    (processes, requests, threads) it owns: `commit()` and `abort()` end all of it.
    """

    #: the name the backup gets on commit
    name: str
    committed: bool = False

    @abstractmethod
    async def commit(self, size: int, *, before_publish: BeforePublish | None = None) -> Committed:
        """Make the bytes sent so far a backup, if exactly *size* of them arrived; returns what was committed.

        *before_publish* is called with the chosen name once every byte is confirmed; the small
        objects it returns are stored beside the backup before it appears (a sink that cannot store
        them raises). Raises [`UploadFailed`][dbstash.UploadFailed] when anything is missing.
        """

    @abstractmethod
    async def abort(self, *, timeout: float | None = None) -> None:
        """Discard what was sent, within *timeout* seconds where the destination needs a call. Never raises."""

    async def interrupt(self) -> None:
        """Stop the transfer at once without ending it cleanly (the pipeline then sees a broken pipe);
        `abort()` follows and removes what arrived. Nothing to do by default."""

    def failure_detail(self) -> str:
        """What the destination reported (stderr tail, HTTP reply), redacted, for error messages."""
        return ""

    async def aclose(self) -> None:
        if not self.committed:
            await self.abort()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        commit = cls.__dict__.get("commit")
        if commit is not None and not _takes(commit, "before_publish"):
            _deprecated(f"{cls.__qualname__}.commit(size)", "commit(size, *, before_publish=None) -> Committed")
            setattr(cls, "commit", _legacy_commit(commit))  # noqa: B010 - mypy would check the override
        abort = cls.__dict__.get("abort")
        if abort is not None and not _takes(abort, "timeout"):
            _deprecated(f"{cls.__qualname__}.abort()", "abort(*, timeout=None)")
            setattr(cls, "abort", _legacy_abort(abort))  # noqa: B010


class Sink(ABC):
    """Something uploads can be started on: the one seam every destination implements.

    Examples:
        A complete upload-only sink, kept in a dict:

        >>> import anyio, dbstash
        >>> class DictUpload(dbstash.SinkUpload):
        ...     def __init__(self, store: dict[str, bytes], name: str) -> None:
        ...         self.store, self.name, self.buf = store, name, bytearray()
        ...     async def send(self, item: bytes) -> None:
        ...         self.buf += item
        ...     async def commit(self, size: int, *, before_publish=None) -> dbstash.Committed:
        ...         self.store[self.name], self.committed = bytes(self.buf), True
        ...         return dbstash.Committed(self.name, size)
        ...     async def abort(self, *, timeout: float | None = None) -> None:
        ...         self.buf.clear()
        >>> class DictSink(dbstash.Sink):
        ...     def __init__(self) -> None:
        ...         self.store: dict[str, bytes] = {}
        ...     async def begin(self, name: str, **options: object) -> DictUpload:
        ...         return DictUpload(self.store, name)
        >>> sink = DictSink()
        >>> anyio.run(dbstash.Pipeline(dbstash.CommandSource(["echo", "hi"]), sink).run, "x")  # doctest: +ELLIPSIS
        PipelineResult(name='x', size=3, ...)
        >>> sink.store
        {'x': b'hi\\n'}
    """

    @abstractmethod
    async def begin(
        self, name: str, *, alternative: str | None = None, size_hint: SizeHint | None = None
    ) -> SinkUpload:
        """Start an upload that becomes the backup *name* when committed.

        *alternative*: the name to take if *name* is already taken at the destination (a run never
        replaces what it did not create); sinks without names that can clash ignore it.
        *size_hint*: called when the destination needs an estimate of the stream's size (object
        stores choose a multipart chunk size from it); may return None.
        """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        begin = cls.__dict__.get("begin")
        if begin is not None and not (_takes(begin, "alternative") or _takes_kwargs(begin)):
            _deprecated(f"{cls.__qualname__}.begin(name)", "begin(name, *, alternative=None, size_hint=None)")
            setattr(cls, "begin", _legacy_begin(begin))  # noqa: B010


# -- the sink protocol of dbstash 0.2 (begin(name), commit(size) -> str, abort()), kept working --------
def _takes(method: Callable[..., object], parameter: str) -> bool:
    return parameter in inspect.signature(method).parameters


def _takes_kwargs(method: Callable[..., object]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(method).parameters.values())


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is the sink protocol of dbstash 0.2; implement {new}", DeprecationWarning, stacklevel=4)


def _legacy_commit(commit: Callable[[Any, int], Awaitable[object]]) -> Callable[..., Awaitable[Committed]]:
    @functools.wraps(commit)
    async def wrapped(self: SinkUpload, size: int, *, before_publish: BeforePublish | None = None) -> Committed:
        if before_publish is not None and await before_publish(self.name):
            raise UploadFailed(f"{type(self).__name__} cannot store files beside a backup (a manifest)")
        name = await commit(self, size)
        return name if isinstance(name, Committed) else Committed(str(name or self.name), size)

    return wrapped


def _legacy_abort(abort: Callable[[Any], Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(abort)
    async def wrapped(self: SinkUpload, *, timeout: float | None = None) -> None:
        await abort(self)

    return wrapped


def _legacy_begin(begin: Callable[[Any, str], Awaitable[SinkUpload]]) -> Callable[..., Awaitable[SinkUpload]]:
    @functools.wraps(begin)
    async def wrapped(self: Sink, name: str, **_: object) -> SinkUpload:
        return await begin(self, name)

    return wrapped


class _StreamUpload(SinkUpload):
    def __init__(
        self, stream: ByteSendStream, name: str, on_commit: Callable[[str, int], Awaitable[None]] | None
    ) -> None:
        self.stream, self.name, self._on_commit = stream, name, on_commit
        self.sent = 0

    async def send(self, item: bytes) -> None:
        await self.stream.send(item)
        self.sent += len(item)

    async def commit(self, size: int, *, before_publish: BeforePublish | None = None) -> Committed:
        if size != self.sent:
            raise UploadFailed(f"{self.sent} bytes were sent, {size} expected")
        if before_publish is not None and await before_publish(self.name):
            raise UploadFailed("a StreamSink cannot store files beside a backup (a manifest)")
        await self.stream.aclose()
        if self._on_commit is not None:
            await self._on_commit(self.name, size)
        self.committed = True
        return Committed(self.name, size)

    async def abort(self, *, timeout: float | None = None) -> None:
        await aclose_forcefully(self.stream)


class StreamSink(Sink):
    """Uploads into any anyio ``ByteSendStream``: *open* is called with the backup's name.

    A commit closes the stream normally and then calls *on_commit* (name, size); an abort closes
    it forcefully and nothing is called, so whatever *on_commit* does marks a backup complete.

    Examples:
        >>> import anyio, dbstash
        >>> async def main() -> list[str]:
        ...     done: list[str] = []
        ...     send, receive = anyio.create_memory_object_stream[bytes](100)
        ...     async def opened(name: str) -> anyio.abc.ByteSendStream:
        ...         return anyio.streams.stapled.StapledObjectStream(send, receive)  # type: ignore[return-value]
        ...     async def committed(name: str, size: int) -> None:
        ...         done.append(f"{name}: {size} bytes")
        ...     sink = dbstash.StreamSink(opened, on_commit=committed)
        ...     await dbstash.Pipeline(dbstash.CommandSource(["echo", "hi"]), sink).run("x")
        ...     return done
        >>> anyio.run(main)
        ['x: 3 bytes']
    """

    def __init__(
        self,
        open: Callable[[str], Awaitable[ByteSendStream]],
        *,
        on_commit: Callable[[str, int], Awaitable[None]] | None = None,
    ) -> None:
        self.open, self.on_commit = open, on_commit

    async def begin(
        self, name: str, *, alternative: str | None = None, size_hint: SizeHint | None = None
    ) -> SinkUpload:
        return _StreamUpload(await self.open(name), name, self.on_commit)


def now_utc() -> datetime:
    """The current time (a seam for in-memory catalogs)."""
    return datetime.now(UTC)


__all__ = ["BeforePublish", "Committed", "Copy", "RemoteEntry", "Sink", "SinkUpload", "SizeHint", "StreamSink"]

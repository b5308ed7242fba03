"""Sinks: where a backup's bytes go. An upload is an anyio ``ByteSendStream`` with ``commit`` and ``abort``.

A :class:`Sink` needs one method, :meth:`Sink.begin`; its upload needs three: ``send``, ``commit``
and ``abort``. Leaving an upload's ``async with`` block without a commit aborts it. What listing,
retention, manifests and restore need besides (list, read, write, delete) is a
:class:`~dbstash.storage.base.Catalog`; the rclone sinks and :class:`MemorySink` are both.

An upload backed by a pipe advertises it through anyio's typed attribute
``FileStreamAttribute.fileno``: the pipeline then writes to the descriptor from its relay thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from anyio import aclose_forcefully
from anyio.abc import ByteSendStream

from dbstash.errors import UploadFailed


class SinkUpload(ByteSendStream):
    """One upload: ``send`` bytes, then ``commit(size)`` to make them a backup, or ``abort()``.

    Subclasses implement :meth:`send`, :meth:`commit` and :meth:`abort`; ``aclose`` (and so the end
    of an ``async with`` block) aborts unless the upload was committed.
    """

    #: the name the backup gets on commit
    name: str
    committed: bool = False

    @abstractmethod
    async def commit(self, size: int) -> str:
        """Make the bytes sent so far a backup called :attr:`name`, if exactly *size* of them arrived.

        Returns the name the backup got. Raises :class:`~dbstash.UploadFailed` otherwise.
        """

    @abstractmethod
    async def abort(self) -> None:
        """Discard what was sent. Never raises."""

    async def aclose(self) -> None:
        if not self.committed:
            await self.abort()


class Sink(ABC):
    """Something uploads can be started on.

    Example (a complete upload-only sink, kept in a dict):
        >>> import anyio, dbstash
        >>> class DictUpload(dbstash.SinkUpload):
        ...     def __init__(self, store: dict[str, bytes], name: str) -> None:
        ...         self.store, self.name, self.buf = store, name, bytearray()
        ...     async def send(self, item: bytes) -> None:
        ...         self.buf += item
        ...     async def commit(self, size: int) -> str:
        ...         self.store[self.name], self.committed = bytes(self.buf), True
        ...         return self.name
        ...     async def abort(self) -> None:
        ...         self.buf.clear()
        >>> class DictSink(dbstash.Sink):
        ...     def __init__(self) -> None:
        ...         self.store: dict[str, bytes] = {}
        ...     async def begin(self, name: str) -> DictUpload:
        ...         return DictUpload(self.store, name)
        >>> sink = DictSink()
        >>> anyio.run(dbstash.Pipeline(dbstash.CommandSource(["echo", "hi"]), sink).run, "x")  # doctest: +ELLIPSIS
        PipelineResult(name='x', size=3, ...)
        >>> sink.store
        {'x': b'hi\\n'}
    """

    @abstractmethod
    async def begin(self, name: str) -> SinkUpload:
        """Start an upload that becomes the backup *name* when committed."""


class _StreamUpload(SinkUpload):
    def __init__(
        self, stream: ByteSendStream, name: str, on_commit: Callable[[str, int], Awaitable[None]] | None
    ) -> None:
        self.stream, self.name, self._on_commit = stream, name, on_commit
        self.sent = 0

    async def send(self, item: bytes) -> None:
        await self.stream.send(item)
        self.sent += len(item)

    async def commit(self, size: int) -> str:
        if size != self.sent:
            raise UploadFailed(f"{self.sent} bytes were sent, {size} expected")
        await self.stream.aclose()
        if self._on_commit is not None:
            await self._on_commit(self.name, size)
        self.committed = True
        return self.name

    async def abort(self) -> None:
        await aclose_forcefully(self.stream)


class StreamSink(Sink):
    """Uploads into any anyio ``ByteSendStream``: *open* is called with the backup's name.

    A commit closes the stream normally and then calls *on_commit* (name, size); an abort closes
    it forcefully and nothing is called, so whatever *on_commit* does marks a backup complete.

    Example:
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

    async def begin(self, name: str) -> SinkUpload:
        return _StreamUpload(await self.open(name), name, self.on_commit)


def now_utc() -> datetime:
    """The current time (a seam for in-memory catalogs)."""
    return datetime.now(UTC)


__all__ = ["Sink", "SinkUpload", "StreamSink"]

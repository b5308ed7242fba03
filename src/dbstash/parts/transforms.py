"""Transforms: steps on the stream between a Source and a Sink (compression, progress, your own).

Counting and sha256 are built into the [`Pipeline`][dbstash.Pipeline] (the commit needs them), so they
are no transforms: every result carries the stored size and digest and the source's byte count.
[`Compress`][dbstash.Compress] and [`Progress`][dbstash.Progress] also run inside the raw-descriptor relay thread (the
fast
path); any other transform makes the pipeline take its async path.

A transform of your own subclasses [`Transform`][dbstash.Transform] and returns a fresh
[`TransformStep`][dbstash.TransformStep]
from [`Transform.start()`][dbstash.Transform.start] for each run.

A [`ProcessTransform`][dbstash.ProcessTransform] is a filter *process* (stdin to stdout) instead: encryption with
``age`` is one ([`AgeEncryption`][dbstash.AgeEncryption]). The pipeline runs it as a stage of its own, fed
by one relay (the transforms before it, e.g. compression) and read by another (hash, count,
upload): both are raw-descriptor threads when the source and the sink have descriptors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

from dbstash.parts.compression import Compressor, StreamCompression, parse_compress

if TYPE_CHECKING:
    from dbstash.engines.base import DumpCommand


class TransformStep(ABC):
    """One run's state of a transform."""

    @abstractmethod
    def feed(self, chunk: bytes, total: int) -> bytes:
        """Transform *chunk* (the source has produced *total* bytes so far); may return b"" (buffered)."""

    def flush(self) -> bytes:
        """What is left at the end of the stream."""
        return b""


class Transform(ABC):
    """A step on the stream; `start()` gives the state for one run.

    Examples:
        A transform of your own; it makes the pipeline take its async path:

        >>> import anyio, dbstash
        >>> class Upper(dbstash.Transform):
        ...     class Step(dbstash.TransformStep):
        ...         def feed(self, chunk: bytes, total: int) -> bytes:
        ...             return chunk.upper()
        ...     def start(self) -> dbstash.TransformStep:
        ...         return self.Step()
        >>> sink = dbstash.MemorySink()
        >>> result = anyio.run(dbstash.Pipeline(dbstash.CommandSource(["printf", "hi"]), sink, [Upper()]).run, "x")
        >>> sink.objects["x"], result.fast_path
        (b'HI', False)
    """

    @abstractmethod
    def start(self) -> TransformStep:
        """A fresh step for one run."""


class ProcessTransform(Transform):
    """A transform that is a filter process: the pipeline writes to its stdin and reads its stdout.

    It must be the last transform (what it writes is what is stored). Its exit status is part of the
    run's verdict: anything but 0 fails the run and nothing is committed.

    Examples:
        A filter of your own; [`AgeEncryption`][dbstash.AgeEncryption] is one:

        >>> import anyio, dbstash
        >>> class Upper(dbstash.ProcessTransform):
        ...     def command(self) -> dbstash.DumpCommand:
        ...         return dbstash.DumpCommand(("tr", "a-z", "A-Z"))
        >>> sink = dbstash.MemorySink()
        >>> result = anyio.run(dbstash.Pipeline(dbstash.CommandSource(["printf", "hi"]), sink, [Upper()]).run, "x")
        >>> sink.objects["x"], result.source_size
        (b'HI', 2)
    """

    @abstractmethod
    def command(self) -> DumpCommand:
        """The filter's command (argv without secrets; secret files as memfds)."""

    def start(self) -> TransformStep:
        raise TypeError(f"{type(self).__name__} is a process: the Pipeline runs it as a stage of its own")


class _CompressStep(TransformStep):
    def __init__(self, compressor: Compressor) -> None:
        self.compressor = compressor

    def feed(self, chunk: bytes, total: int) -> bytes:
        return self.compressor.compress(chunk)

    def flush(self) -> bytes:
        return self.compressor.flush()


class Compress(Transform):
    """gzip or zstd on the stream: ``Compress("zstd")``, ``Compress("gzip:9")``.

    Examples:
        >>> import dbstash
        >>> dbstash.Compress("zstd:19").suffix
        '.zst'
    """

    def __init__(self, how: str | StreamCompression = "zstd") -> None:
        if isinstance(how, StreamCompression):
            self.compression = how
        else:
            _, parsed = parse_compress(how, "how")
            if parsed is None:
                raise ValueError("how: gzip, zstd, gzip:LEVEL or zstd:LEVEL")
            self.compression = parsed

    @property
    def suffix(self) -> str:
        """``.gz`` or ``.zst``."""
        return self.compression.suffix

    def start(self) -> TransformStep:
        return _CompressStep(self.compression.compressor())


class _ProgressStep(TransformStep):
    def __init__(self, callback: Callable[[int], None]) -> None:
        self.callback = callback

    def feed(self, chunk: bytes, total: int) -> bytes:
        self.callback(total)
        return chunk


class Progress(Transform):
    """Calls *callback* with the number of bytes the source has produced so far (from the relay thread
    on the fast path, about twice a second; from the event loop on the async path, per chunk).

    Examples:
        >>> import anyio, dbstash
        >>> seen: list[int] = []
        >>> source, sink = dbstash.CommandSource(["echo", "hi"]), dbstash.MemorySink()
        >>> _ = anyio.run(dbstash.Pipeline(source, sink, [dbstash.Progress(seen.append)]).run, "x")
        >>> seen[-1]
        3
    """

    def __init__(self, callback: Callable[[int], None]) -> None:
        self.callback = callback

    def start(self) -> TransformStep:
        return _ProgressStep(self.callback)


__all__ = ["Compress", "ProcessTransform", "Progress", "Transform", "TransformStep"]

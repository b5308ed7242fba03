"""Sources: where a backup's bytes come from. A running source is an anyio byte stream plus a verdict.

The verdict is the source's own word on whether the bytes it produced are a complete dump (the dump
tool's exit status, the engine's end-of-dump check). The [`Pipeline`][dbstash.Pipeline] awaits it
before any commit: a source that ends early never looks like one that finished.

Three kinds:

- [`DumpSource`][dbstash.DumpSource]: an engine's dump tool for one connection (``pg_dump``, ``mysqldump``, ...).
- [`CommandSource`][dbstash.CommandSource]: any command, with extra environment and secret files (memfds), e.g.
  ``pg_dumpall --globals-only``.
- [`StreamSource`][dbstash.StreamSource]: any anyio ``ByteReceiveStream`` or async iterable of bytes.

A process-backed source advertises its pipe through anyio's typed attribute
``FileStreamAttribute.fileno``: the pipeline then relays on raw file descriptors (the fast path).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
from anyio import TypedAttributeSet, typed_attribute
from anyio.abc import ByteReceiveStream
from anyio.streams.file import FileStreamAttribute

from dbstash.engines.base import Connection, DumpCommand, DumpOptions, Engine
from dbstash.errors import DumpFailed
from dbstash.parts.process import ChildProcess, grow_pipe
from dbstash.redact import GLOBAL_REDACTOR, Redactor

#: How many of the last bytes a source keeps for its end-of-dump check.
TAIL = 4096
#: How long a stopped command gets to exit after SIGTERM before SIGKILL.
STOP_GRACE = 2.0

#: An end-of-dump check: the last bytes of the stream -> None if complete, else why not.
TailCheck = Callable[[bytes], str | None]


class SourceStream(ByteReceiveStream):
    """A running source: read it with ``receive()`` until ``EndOfStream``, then ask `verdict()`."""

    #: a short name for messages (the tool's name)
    name: str = "source"

    @abstractmethod
    async def verdict(self, tail: bytes | None = None) -> None:
        """Return only if the bytes produced were a complete dump; raise [`DumpFailed`][dbstash.DumpFailed] otherwise.

        *tail*: the stream's last bytes when someone else read them (the pipeline's fast path reads
        the file descriptor directly); None means the stream's own record of them.
        """

    async def stop(self) -> None:
        """Stop producing at once (the run failed elsewhere). Never raises."""

    async def aclose(self) -> None:
        await self.stop()


class Source(ABC):
    """Something that can be started into a [`SourceStream`][dbstash.SourceStream]."""

    @abstractmethod
    async def start(self, redactor: Redactor | None = None) -> SourceStream:
        """Start producing. *redactor* masks secrets in what the source reports (default: dbstash's own)."""


class SourceAttribute(TypedAttributeSet):
    """What a running source may advertise besides its descriptor (``stream.extra(...)``).

    Examples:
        >>> import anyio, dbstash
        >>> async def main() -> tuple[str, ...]:
        ...     stream = await dbstash.CommandSource(["echo", "hi"]).start()
        ...     try:
        ...         return stream.extra(dbstash.SourceAttribute.command).argv
        ...     finally:
        ...         await stream.aclose()
        >>> anyio.run(main)
        ('echo', 'hi')
    """

    #: the command it runs (a [`DumpCommand`][dbstash.DumpCommand]: the tool's version for the manifest)
    command: DumpCommand = typed_attribute()


class ProcessStream(SourceStream):
    """A child process's stdout. Advertises its fd for the fast path, and the command it runs."""

    def __init__(self, proc: ChildProcess, check: TailCheck | None, command: DumpCommand | None = None) -> None:
        assert proc.popen.stdout is not None
        self.command = command
        self.proc = proc
        self.name = proc.name
        self._fd = self.fileno = proc.popen.stdout.fileno()
        grow_pipe(self._fd)
        self._check = check
        self._tail = b""

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        found: dict[Any, Callable[[], Any]] = {FileStreamAttribute.fileno: lambda: self._fd}
        if self.command is not None:
            command = self.command
            found[SourceAttribute.command] = lambda: command
        return found

    async def receive(self, max_bytes: int = 1 << 20) -> bytes:
        await anyio.wait_readable(self._fd)
        data = os.read(self._fd, max_bytes)
        if not data:
            raise anyio.EndOfStream
        self._tail = (self._tail + data)[-TAIL:]
        return data

    async def verdict(self, tail: bytes | None = None) -> None:
        status = await self.proc.wait()
        if status != 0:
            raise DumpFailed(
                f"{self.proc.name} {self.proc.describe_exit(status)}",
                exit_status=status,
                stderr_tail=self.proc.stderr.text(),
            )
        reason = self._check(self._tail if tail is None else tail) if self._check is not None else None
        if reason:
            raise DumpFailed(reason, exit_status=0, stderr_tail=self.proc.stderr.text())

    async def stop(self) -> None:
        await self.proc.stop(grace=STOP_GRACE)

    async def aclose(self) -> None:
        await self.stop()
        assert self.proc.popen.stdout is not None
        self.proc.popen.stdout.close()


class CommandSource(Source):
    """The stdout of a command: argv (never a secret), extra environment, secret files.

    The child gets dbstash's scrubbed environment plus *env*; each *secret_files* entry becomes an
    in-memory file that argv names as ``{secret:NAME}`` (``/dev/fd/N`` in the child). *check* looks
    at the last bytes and returns why the output is incomplete, or None.

    Examples:
        >>> import anyio, dbstash
        >>> async def main() -> bytes:
        ...     sink = dbstash.MemorySink()
        ...     source = dbstash.CommandSource(["printf", "hello"])
        ...     await dbstash.Pipeline(source, sink).run("greeting.txt")
        ...     return sink.objects["greeting.txt"]
        >>> anyio.run(main)
        b'hello'
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        secret_files: Mapping[str, bytes] | None = None,
        check: TailCheck | None = None,
    ) -> None:
        if not argv:
            raise ValueError("argv: a command to run (a non-empty list)")
        self.command = DumpCommand(tuple(argv), dict(env or {}), secret_files=dict(secret_files or {}))
        self.check = check

    async def start(self, redactor: Redactor | None = None) -> SourceStream:
        proc = self.command.start(redactor or GLOBAL_REDACTOR, stdout=subprocess.PIPE)
        return ProcessStream(proc, self.check, self.command)


class DumpSource(Source):
    """An engine's dump of one connection: the tool, its arguments and its end-of-dump check.

    The command is built when the source starts (engines may probe the server first, e.g. the
    PostgreSQL major to pick the matching ``pg_dump``); the running stream advertises it
    (``SourceAttribute.command``), so a [`PipelineResult`][dbstash.PipelineResult] holds it.

    Examples:
        >>> import dbstash
        >>> engine = dbstash.get_engine("sqlite")
        >>> source = dbstash.DumpSource(engine, engine.parse_uri("sqlite:///srv/app.db"))
        >>> source.engine.key
        'sqlite'
    """

    def __init__(
        self,
        engine: Engine,
        connection: Connection,
        options: DumpOptions | None = None,
        *,
        check_tail: bool = True,
        command: DumpCommand | Callable[[], Awaitable[DumpCommand]] | None = None,
    ) -> None:
        self.engine = engine
        self.connection = connection
        self.options = options or DumpOptions()
        self.check_tail = check_tail
        self._build = command
        self.command: DumpCommand | None = command if isinstance(command, DumpCommand) else None

    async def start(self, redactor: Redactor | None = None) -> SourceStream:
        if self.command is None:
            built = self._build() if callable(self._build) else self.engine.dump_command(self.connection, self.options)
            self.command = await built
        command = self.command
        redactor = redactor or GLOBAL_REDACTOR
        redactor.add(self.connection.password)  # masked whichever redactor the caller gave: safe by default
        proc = command.start(redactor, stdout=subprocess.PIPE)
        engine = self.engine
        check: TailCheck | None = (lambda tail: engine.check_output_tail(tail, command)) if self.check_tail else None
        return ProcessStream(proc, check, command)


class _IterStream(SourceStream):
    def __init__(self, items: AsyncIterator[bytes], verdict: Callable[[], Awaitable[None]] | None) -> None:
        self._items = items
        self._verdict = verdict
        self.name = "stream"

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            return bytes(await self._items.__anext__())
        except StopAsyncIteration:
            raise anyio.EndOfStream from None

    async def verdict(self, tail: bytes | None = None) -> None:
        if self._verdict is not None:
            await self._verdict()

    async def stop(self) -> None:
        aclose = getattr(self._items, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):  # stopping a failed run: its own error is the one to report
                await aclose()


class StreamSource(Source):
    """Bytes from Python: an anyio ``ByteReceiveStream`` or any async iterable of ``bytes``.

    The stream's end is taken as complete unless *verdict* (an async callable) raises
    [`DumpFailed`][dbstash.DumpFailed]: give one when the producer can fail after its last byte.

    Examples:
        >>> import anyio, dbstash
        >>> async def rows():
        ...     for i in range(3):
        ...         yield f"row {i}\\n".encode()
        >>> async def main() -> bytes:
        ...     sink = dbstash.MemorySink()
        ...     await dbstash.Pipeline(dbstash.StreamSource(rows()), sink).run("rows.txt")
        ...     return sink.objects["rows.txt"]
        >>> anyio.run(main)
        b'row 0\\nrow 1\\nrow 2\\n'
    """

    def __init__(
        self, stream: ByteReceiveStream | AsyncIterable[bytes], *, verdict: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.stream = stream
        self.verdict = verdict

    async def start(self, redactor: Redactor | None = None) -> SourceStream:
        if isinstance(self.stream, ByteReceiveStream):
            return _IterStream(_receive_all(self.stream), self.verdict)
        return _IterStream(aiter(self.stream), self.verdict)


async def _receive_all(stream: ByteReceiveStream) -> AsyncIterator[bytes]:
    async with stream:
        try:
            while True:
                yield await stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return


__all__ = ["CommandSource", "DumpSource", "Source", "SourceStream", "StreamSource"]

"""An in-memory remote folder: a complete [`Storage`][dbstash.Storage] for tests and examples.

Users test their own code against dbstash with it, without rclone or a server (the way httpx's
``MockTransport`` stands in for a network): backups, manifests, retention, listing and restore all
work on it. Its commit follows the rclone transports' protocol (partial name, size check, a free
name, manifest first), so a test that passes here exercises the same decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from dbstash.errors import StorageError, UploadFailed
from dbstash.jobs.naming import partial_name
from dbstash.parts.sink import RemoteEntry, SizeHint, now_utc
from dbstash.storage.base import Storage, Upload


class MemoryUpload(Upload):
    """Bytes kept in a buffer until the commit stores them under a partial name and publishes them."""

    def __init__(self, sink: MemorySink, final_name: str, partial: str, alternative: str | None = None) -> None:
        self._sink = self._catalog = sink
        self.final_name = final_name
        self.partial_name = partial
        self.alternative = alternative
        self._buf = bytearray()
        self._done = False

    async def send(self, item: bytes) -> None:
        if self._done:
            raise UploadFailed("the upload was already committed or aborted")
        if self._sink.fail_after is not None and len(self._buf) + len(item) > self._sink.fail_after:
            raise UploadFailed(f"the in-memory remote failed after {self._sink.fail_after} bytes (fail_after)")
        self._buf += item

    async def _finish(self) -> None:
        self._sink._put(self.partial_name, bytes(self._buf))

    async def abort(self, *, timeout: float | None = None) -> None:
        self._done = True
        self._buf.clear()
        self._sink.objects.pop(self.partial_name, None)


class MemorySink(Storage):
    """A remote folder in a dict: `objects` maps names to bytes.

    *fail_after*: uploads fail once they received more than that many bytes (to test failure paths).

    Examples:
        >>> import os, sqlite3, tempfile, dbstash
        >>> db = os.path.join(tempfile.mkdtemp(), "app.db")
        >>> sqlite3.connect(db).execute("CREATE TABLE t(x)").connection.commit()
        >>> sink = dbstash.MemorySink()
        >>> result = dbstash.backup(f"sqlite:///{db}", storage=sink)
        >>> sorted(sink.objects) == [result.name, result.name + ".dbstash-manifest.json"]
        True
    """

    def __init__(self, remote: str = "memory:", *, fail_after: int | None = None) -> None:
        self.remote = remote
        self.objects: dict[str, bytes] = {}
        self.modtimes: dict[str, datetime] = {}
        self.fail_after = fail_after
        self._ids = 0

    def _put(self, name: str, data: bytes) -> None:
        self.objects[name] = data
        self.modtimes[name] = now_utc()

    async def begin(
        self, name: str, *, alternative: str | None = None, size_hint: SizeHint | None = None
    ) -> MemoryUpload:
        self._ids += 1
        return MemoryUpload(self, name, partial_name(name, f"{self._ids:08x}"), alternative)

    async def list(self) -> list[RemoteEntry]:
        return [RemoteEntry(n, len(d), self.modtimes[n]) for n, d in sorted(self.objects.items())]

    async def stat(self, name: str) -> RemoteEntry | None:
        if name not in self.objects:
            return None
        return RemoteEntry(name, len(self.objects[name]), self.modtimes[name])

    async def delete(self, name: str, *, timeout: float | None = None) -> None:
        self.objects.pop(name, None)
        self.modtimes.pop(name, None)

    async def delete_many(self, names: Sequence[str]) -> None:
        for name in names:
            await self.delete(name)

    async def read(self, name: str) -> bytes:
        try:
            return self.objects[name]
        except KeyError:
            raise StorageError(f"{name}: no such object in the in-memory remote") from None

    async def read_stream(self, name: str, sink: Callable[[bytes], None]) -> None:
        data = await self.read(name)
        for i in range(0, len(data), 1 << 20):
            sink(data[i : i + (1 << 20)])

    async def write(self, name: str, data: bytes) -> None:
        self._put(name, bytes(data))

    async def move(self, src: str, dst: str) -> None:
        if src not in self.objects:
            raise StorageError(f"{src}: no such object in the in-memory remote")
        self.objects[dst] = self.objects.pop(src)
        self.modtimes[dst] = self.modtimes.pop(src)

    def path(self, name: str) -> str:
        return self.remote + name


__all__ = ["MemorySink", "MemoryUpload"]

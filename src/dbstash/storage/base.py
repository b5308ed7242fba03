"""Storage: a remote folder that is a [`Sink`][dbstash.Sink] and a [`Catalog`][dbstash.Catalog] (list, read, write,
delete).

Two-phase uploads: [`Storage.begin()`][dbstash.Storage.begin] returns an [`Upload`][dbstash.Upload] whose bytes go to
a partial
name (or, on object stores, to the final name under a guardian); [`Upload.commit()`][dbstash.Upload.commit] stores the
manifest and makes the backup visible under its final name only after the remote confirmed every
byte, [`Upload.abort()`][dbstash.Upload.abort] removes it.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
from anyio.streams.file import FileStreamAttribute

from dbstash.errors import StorageError, UploadFailed
from dbstash.jobs.manifest import MANIFEST_SUFFIX, manifest_name
from dbstash.jobs.naming import partial_target
from dbstash.logs import get_logger
from dbstash.parts.process import write_all
from dbstash.parts.sink import BeforePublish, Committed, RemoteEntry, Sink, SinkUpload, SizeHint

log = get_logger("dbstash.storage")

#: How long an abort may spend removing the partial upload, by default.
ABORT_DELETE_TIMEOUT = 5.0
#: How long an interrupted upload process gets to exit after SIGTERM before SIGKILL.
INTERRUPT_GRACE = 2.0

#: How often a small object (a manifest) is written before the run gives up, and the pause between tries.
WRITE_TRIES = 3
WRITE_RETRY_PAUSE = 1.0


class Upload(SinkUpload):
    """An upload into a [`Storage`][dbstash.Storage]: written under a partial name, published by `commit()`.

    The rclone uploads are pipes: they advertise the write end through the typed attribute
    ``FileStreamAttribute.fileno`` (the pipeline's relay thread writes there) and `send()`
    writes to it from async code.
    """

    final_name: str
    partial_name: str
    #: the name to publish under when `final_name` is taken (given to [`Storage.begin()`][dbstash.Storage.begin])
    alternative: str | None = None

    @property
    def name(self) -> str:  # type: ignore[override]  # the SinkUpload attribute, derived here
        return self.final_name

    def fileno(self) -> int | None:
        """The pipe the pipeline may write to directly, or None."""
        return None

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        fd = self.fileno()
        return {} if fd is None else {FileStreamAttribute.fileno: lambda: fd}

    async def send(self, item: bytes) -> None:
        """Write *item* to the pipe without blocking the event loop (the async relay's path)."""
        fd = self.fileno()
        if fd is None:
            raise NotImplementedError(f"{type(self).__name__} must implement send()")
        try:  # only the async path writes here (non-blocking); the relay thread never does then
            await write_all(fd, item)
        except BrokenPipeError:
            raise UploadFailed("the upload stopped reading (it failed)") from None

    async def aclose(self) -> None:
        if not self.committed:
            await self.abort()

    #: the folder this upload publishes into (set by each transport)
    _catalog: Catalog
    #: set once the upload was committed or aborted: neither happens twice
    _done: bool = False

    @abstractmethod
    async def _finish(self) -> None:
        """End the transfer and wait until the remote holds every byte under `partial_name`."""

    async def commit(self, size: int, *, before_publish: BeforePublish | None = None) -> Committed:
        """Finish the upload and publish it; raise UploadFailed unless every byte landed.

        The name is `final_name`, or `alternative` when something of this name (a
        backup, its manifest or another run's upload) is already there: a run never replaces what
        it did not create. The small objects *before_publish* returns for the chosen name are
        stored first (`store_sidecars()`).
        """
        await self._finish()
        name, entries = await publish(
            self._catalog,
            self.partial_name,
            self.final_name,
            size,
            alternative=self.alternative,
            before_publish=lambda chosen: self.store_sidecars(chosen, before_publish),
        )
        self._done = self.committed = True
        return Committed(name, size, tuple(entries))

    async def store_sidecars(self, name: str, before_publish: BeforePublish | None) -> None:
        """Store what *before_publish* returns for *name* (`store_sidecars()`, through `write_sidecar()`)."""
        written = await before_publish(name) if before_publish is not None else None
        await store_sidecars(self._catalog, written or {}, self.write_sidecar)

    async def write_sidecar(self, name: str, data: bytes) -> None:
        """Store one small object beside the backup (the rclone uploads use an rclone they started early)."""
        await self._catalog.write_verified(name, data)

    async def interrupt(self) -> None:
        """Stop the transfer at once without ending it cleanly (the relay then sees a broken pipe).

        Leaves the partial object for `abort()` to remove; the pipe stays open until then.
        """

    @abstractmethod
    async def abort(self, *, timeout: float | None = None) -> None:
        """Stop the upload and remove whatever reached the remote. Never raises.

        *timeout* bounds the removal (default `ABORT_DELETE_TIMEOUT`); a partial upload it could
        not remove stays under its partial name, which listing, retention and restore ignore, and a
        later run of the job removes (`stale_partials()`).
        """


class Catalog(ABC):
    """What listing, retention, manifests and restore need of a remote folder: list, read, write, delete."""

    remote: str

    @abstractmethod
    async def list(self) -> list[RemoteEntry]:
        """Objects and folders directly under the remote folder, in one listing call."""

    @abstractmethod
    async def delete(self, name: str, *, timeout: float | None = None) -> None:
        """Remove the object *name* (a missing one is not an error); *timeout* bounds the call."""

    async def delete_many(self, names: Sequence[str]) -> None:
        """Remove every object in *names* (missing ones are not an error). Transports batch this."""
        for name in names:
            await self.delete(name)

    @abstractmethod
    async def stat(self, name: str) -> RemoteEntry | None:
        """The object *name*, or None if it does not exist."""

    @abstractmethod
    async def read(self, name: str) -> bytes:
        """The whole content of *name* (small objects and tests; restores stream instead)."""

    async def read_many(self, names: Sequence[str]) -> dict[str, bytes]:
        """The content of each of *names* that exists (small objects: manifests). Transports batch this."""
        found: dict[str, bytes] = {}
        for name in names:
            try:
                found[name] = await self.read(name)
            except StorageError:
                continue
        return found

    @abstractmethod
    async def read_stream(self, name: str, sink: Callable[[bytes], None]) -> None:
        """Stream *name* into *sink*, called from a worker thread with chunks of up to 1 MiB.

        Returns only when the whole object arrived; raises StorageError otherwise. An exception
        raised by *sink* stops the transfer and propagates.
        """

    @abstractmethod
    async def write(self, name: str, data: bytes) -> None:
        """Store a small object (a manifest) under *name*, replacing any object of that name."""

    async def write_verified(self, name: str, data: bytes) -> None:
        """`write()`, then confirm the stored size (a full disk can leave an empty object behind
        while the write reports success); tried `WRITE_TRIES` times. Raises StorageError."""
        problem = ""
        for attempt in range(WRITE_TRIES):
            if attempt:
                await anyio.sleep(WRITE_RETRY_PAUSE)
            try:
                await self.write(name, data)
                entry = await self.stat(name)
            except StorageError as exc:
                problem = str(exc)
                continue
            if entry is not None and entry.size in (len(data), -1):
                return
            problem = (
                "it is missing after the write" if entry is None else f"it holds {entry.size} of {len(data)} bytes"
            )
            log.warning("writing %s: %s (attempt %d of %d)", name, problem, attempt + 1, WRITE_TRIES)
        raise StorageError(f"could not store {name}: {problem}")

    async def upload_dir(self, local: str, name: str, expected: dict[str, int]) -> None:
        """Copy the local folder *local* to the folder *name*; raise UploadFailed unless every file
        of *expected* (relative path -> size) arrived with its size."""
        raise StorageError(f"{type(self).__name__} cannot upload folders (directory mode needs the rclone CLI)")

    async def download_dir(self, name: str, local: str) -> None:
        """Copy the folder *name* into the local folder *local*."""
        raise StorageError(f"{type(self).__name__} cannot download folders (use the rclone CLI transport)")

    async def move(self, src: str, dst: str) -> None:
        """Rename the object *src* to *dst* inside the folder (replacing *dst*)."""
        raise StorageError(f"{type(self).__name__} cannot move objects")

    async def purge(self, name: str) -> None:
        """Remove the folder *name* and everything in it (a missing folder is not an error)."""
        raise StorageError(f"{type(self).__name__} cannot remove folders")

    def path(self, name: str) -> str:
        """The rclone path of *name* inside the remote folder."""
        return join_remote(self.remote, name)


class Storage(Catalog, Sink):
    """A remote folder that is both a [`Sink`][dbstash.Sink] and a [`Catalog`][dbstash.Catalog]: what a backup job
    needs.

    Implementations: the rclone CLI, the rclone rc API, and [`MemorySink`][dbstash.MemorySink].
    """

    @abstractmethod
    async def begin(self, name: str, *, alternative: str | None = None, size_hint: SizeHint | None = None) -> Upload:
        """Start writing a new object that will be called *name* (or *alternative*) once committed.

        Transports that name the object before the upload (the direct commit on object stores)
        decide between *name* and *alternative* here, the others at commit. *size_hint*: called when
        the transport needs an estimate of the stream's size (a multipart chunk size); may be None.
        """

    async def begin_upload(
        self, name: str, *, alternative: str | None = None, size_hint: SizeHint | None = None
    ) -> Upload:
        """Deprecated name of `begin()` (dbstash 0.2)."""
        warnings.warn("Storage.begin_upload() is deprecated: use begin()", DeprecationWarning, stacklevel=2)
        return await self.begin(name, alternative=alternative, size_hint=size_hint)

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


#: How a remote says no to a deletion (S3's 403 AccessDenied, an Object Lock or WORM retention).
_REFUSED = re.compile(
    r"\bAccessDenied\b|\baccess denied\b|\bStatusCode: 403\b|\b403 Forbidden\b|\bobject ?lock|\bWORM\b", re.IGNORECASE
)


async def store_sidecars(
    catalog: Catalog, written: Mapping[str, bytes], write: Callable[[str, bytes], Awaitable[None]] | None = None
) -> None:
    """Store the small objects beside a backup (its manifest, signature) at once, each confirmed
    (*write*, by default ``catalog.write_verified``); on any failure remove them again and raise
    UploadFailed: a backup without its manifest is not one."""
    failed: list[StorageError] = []
    put = write or catalog.write_verified

    async def one(key: str, data: bytes) -> None:
        try:
            await put(key, data)
        except StorageError as exc:
            failed.append(exc)

    async with anyio.create_task_group() as tg:  # at once: a signature costs no extra time
        for key, data in written.items():
            tg.start_soon(one, key, data)
    if failed:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10), contextlib.suppress(Exception):
            await catalog.delete_many(list(written))
        raise UploadFailed(
            f"{failed[0]}: the backup was not committed (a backup without its manifest is not one)"
        ) from None


def delete_refused(exc: BaseException) -> bool:
    """Whether *exc* is the remote refusing a deletion (not a failure to reach it)."""
    return _REFUSED.search(str(exc)) is not None


def remote_name(remote: str) -> str | None:
    """The configured remote an rclone path names (``s3:bucket/x`` -> ``s3``, ``b2,opt=v:x`` -> ``b2``);
    None for a local path (``/srv/backups``) or an on-the-fly backend (``:s3,provider=AWS:bucket``)."""
    head, sep, _ = remote.partition(":")
    if not sep or not head or "/" in head or "\\" in head:
        return None
    return head.split(",", 1)[0]


def join_remote(remote: str, name: str) -> str:
    """``s3:bucket/pg`` + ``x.sql`` -> ``s3:bucket/pg/x.sql``; ``s3:`` + ``x`` -> ``s3:x``."""
    if not remote or remote.endswith((":", "/")):
        return remote + name
    return f"{remote}/{name}"


def taken(entries: Sequence[RemoteEntry], name: str, own_partial: str | None = None) -> bool:
    """Whether *name* is in use among *entries*: the object, its manifest, or another run's upload to it."""
    for e in entries:
        if e.name in (name, manifest_name(name)):
            return True
        if e.name != own_partial and partial_target(e.name) == name:
            return True
    return False


def in_use(entries: Sequence[RemoteEntry], name: str, alternative: str | None, own_partial: str | None) -> bool:
    """Whether a run must not take *name*: it is `taken()`, or a backup of the same second already
    stands under an *alternative*-shaped name (``NAME-xxxxxxxx.EXT``). A run that took the plain name after
    retention deleted it would sort before the backups of that second it came after."""
    if taken(entries, name, own_partial):
        return True
    if alternative is None:
        return False
    # where the alternative inserts its "-xxxxxxxx" (before the extension): the last point where the two
    # agree on both sides (not the longest common suffix: the suffix's own last characters may match the name's)
    gap = len(alternative) - len(name)
    k = next(
        i
        for i in range(len(name), -1, -1)
        if alternative[:i] == name[:i] and alternative[i] == "-" and alternative[i + gap :] == name[i:]
    )
    same_second = re.compile(re.escape(name[:k]) + r"-[0-9a-f]{8}" + re.escape(name[k:]))
    for e in entries:
        if e.name == own_partial:
            continue
        base = partial_target(e.name) or e.name.removesuffix(MANIFEST_SUFFIX)
        if same_second.fullmatch(base):
            return True
    return False


async def publish(
    storage: Catalog,
    partial: str,
    final: str,
    expected_size: int,
    *,
    alternative: str | None = None,
    before_publish: Callable[[str], Awaitable[None]] | None = None,
) -> tuple[str, list[RemoteEntry]]:
    """The commit's second half, shared by the transports: confirm the size, pick the name, move.

    One listing confirms that *partial* holds *expected_size* bytes and shows whether *final* is
    taken. Two runs racing for one name cannot both take it: each run's upload is visible (as its
    partial, then under its final name) from the end of its transfer on, and a run takes *final*
    only if it sees nothing else there, so at most one of two overlapping runs sees nothing.
    Returns the name and the listing (the job reuses it: no second listing per run).
    """
    entries = await storage.list()
    entry = next((e for e in entries if e.name == partial), None)
    if entry is None:
        raise UploadFailed("rclone reported success but the uploaded object is not on the remote")
    if entry.size >= 0 and entry.size != expected_size:
        raise UploadFailed(f"the remote holds {entry.size} bytes, {expected_size} were sent")
    name = final
    if alternative is not None and in_use(entries, final, alternative, partial):
        log.warning("%s is already taken (another run of this job?): this backup is stored as %s", final, alternative)
        name = alternative
        if taken(entries, name, partial):
            raise UploadFailed(f"both {final} and {alternative} are taken on the remote")
    if before_publish is not None:
        await before_publish(name)
    try:
        await storage.move(partial, name)
    except StorageError as exc:
        raise UploadFailed(f"moving the upload to {name} failed: {exc}") from None
    return name, entries

"""The Storage seam: where backups go and how they are listed, removed and read back.

Two-phase uploads: :meth:`Storage.begin_upload` returns an :class:`Upload` whose bytes go to a
partial name; :meth:`Upload.commit` makes it visible under the final name only after the remote
confirmed every byte, :meth:`Upload.abort` removes it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from dbstash.errors import StorageError


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """One object (or folder) directly under the remote folder."""

    name: str
    size: int
    modtime: datetime
    is_dir: bool = False


class Upload(ABC):
    """An upload in progress. Bytes are written to :meth:`fileno` (a pipe), then committed or aborted."""

    final_name: str
    partial_name: str

    @abstractmethod
    def fileno(self) -> int:
        """The write end the pipeline relays into. Closing it is the commit's job, never the relay's."""

    @abstractmethod
    async def commit(self, expected_size: int) -> None:
        """Finish the upload and move it to its final name; raise UploadFailed unless every byte landed."""

    @abstractmethod
    async def interrupt(self) -> None:
        """Stop the transfer at once without ending it cleanly (the relay then sees a broken pipe).

        Leaves the partial object for :meth:`abort` to remove; the pipe stays open until then.
        """

    @abstractmethod
    async def abort(self) -> None:
        """Stop the upload and remove whatever reached the remote. Never raises for a missing object."""

    @abstractmethod
    def failure_detail(self) -> str:
        """What the transport reported (stderr tail, HTTP reply), redacted, for error messages."""


class Storage(ABC):
    """A folder on a remote. Implementations: rclone CLI (here), rclone rc HTTP API (later)."""

    remote: str

    @abstractmethod
    async def begin_upload(self, name: str) -> Upload:
        """Start writing a new object that will be called *name* once committed."""

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

    @abstractmethod
    async def read_stream(self, name: str, sink: Callable[[bytes], None]) -> None:
        """Stream *name* into *sink*, called from a worker thread with chunks of up to 1 MiB.

        Returns only when the whole object arrived; raises StorageError otherwise. An exception
        raised by *sink* stops the transfer and propagates.
        """

    @abstractmethod
    async def write(self, name: str, data: bytes) -> None:
        """Store a small object (a manifest) under *name*, replacing any object of that name."""

    async def upload_dir(self, local: str, name: str, expected: dict[str, int]) -> None:
        """Copy the local folder *local* to the folder *name*; raise UploadFailed unless every file
        of *expected* (relative path -> size) arrived with its size."""
        raise StorageError(f"{type(self).__name__} cannot upload folders (directory mode needs the rclone CLI)")

    async def download_dir(self, name: str, local: str) -> None:
        """Copy the folder *name* into the local folder *local*."""
        raise StorageError(f"{type(self).__name__} cannot download folders (use the rclone CLI transport)")

    async def purge(self, name: str) -> None:
        """Remove the folder *name* and everything in it (a missing folder is not an error)."""
        raise StorageError(f"{type(self).__name__} cannot remove folders")

    def path(self, name: str) -> str:
        """The rclone path of *name* inside the remote folder."""
        return join_remote(self.remote, name)

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def join_remote(remote: str, name: str) -> str:
    """``s3:bucket/pg`` + ``x.sql`` -> ``s3:bucket/pg/x.sql``; ``s3:`` + ``x`` -> ``s3:x``."""
    if not remote or remote.endswith((":", "/")):
        return remote + name
    return f"{remote}/{name}"

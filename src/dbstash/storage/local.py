"""A plain local folder's metadata operations done by the OS instead of an rclone start each.

A backup into a local folder still streams through ``rclone rcat`` (to its partial name). What
follows the stream is metadata: list the folder (confirm the size, see whether the name is taken),
write the manifest, rename the partial to the final name. Through rclone each is a process start
(~55 ms of CPU: Go initialising its 70 backends) for what the kernel does in microseconds; on a
local folder ``rclone moveto`` *is* a ``rename(2)``. So when the remote is a folder rclone would
store into as is, dbstash does these itself, with the results rclone would give:

- only for a plain path (``/srv/backups``, ``./backups``: no ``remote:`` and no ``:local:``), with
  no ``--local-*`` flag or ``RCLONE_LOCAL_*`` variable and none of the flags that change what a
  move or a write does (``--dry-run``, ``--backup-dir``, ``--immutable``, ...): otherwise rclone
  does everything, as before;
- only for names rclone's local backend stores unchanged (its default encoding touches NUL, ``/``,
  ``.`` and ``..`` only): anything else goes through rclone;
- a listing shows what ``rclone lsjson`` shows: regular files and folders (symbolic links are
  skipped, as rclone skips them by default), sizes and times as rclone reports them;
- the manifest is written to a partial name (``O_EXCL``, mode 0600 as rclone's files under
  dbstash's umask) and renamed into place: it appears whole or not at all.

The file data is not fsync'ed (rclone does not either): a backup in a local folder is as durable
as the folder's file system makes a closed file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from dbstash.parts.sink import RemoteEntry

#: rclone flags that change what a move, a write or a listing does on a local folder: with any of
#: these (or any ``--local-*`` flag) rclone keeps doing the folder's metadata operations.
RCLONE_ONLY_FLAGS = frozenset(
    {
        "--dry-run",
        "-n",
        "--interactive",
        "-i",
        "--backup-dir",
        "--suffix",
        "--suffix-keep-extension",
        "--immutable",
        "--links",
        "-l",
        "--copy-links",
        "-L",
        "--metadata",
        "-M",
        "--metadata-set",
        "--inplace",
        "--partial-suffix",
    }
)


class LocalFolder:
    """The OS-level operations on a local folder that rclone would otherwise do (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = root

    @classmethod
    def for_remote(cls, remote: str, extra_args: Sequence[str], env: Mapping[str, str]) -> LocalFolder | None:
        """The folder *remote* names, if rclone would treat it as a plain local path (else None)."""
        if not remote or ":" in remote.split("/", 1)[0] or remote.startswith(":"):
            return None  # remote:path, :backend:path (a colon after the first slash is part of a local path)
        if any(k.startswith("RCLONE_LOCAL_") for k in env):
            return None
        for arg in extra_args:
            flag = arg.split("=", 1)[0]
            if flag.startswith("--local-") or flag in RCLONE_ONLY_FLAGS:
                return None
        return cls(os.path.abspath(remote))

    @staticmethod
    def handles(name: str) -> bool:
        """Whether rclone stores *name* unchanged (so the OS may operate on it directly)."""
        if not name or name in (".", "..") or "/" in name or "\0" in name:
            return False
        try:
            name.encode("utf-8")  # surrogate escapes: bytes that are no UTF-8, which rclone re-encodes
        except UnicodeEncodeError:
            return False
        return True

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def list(self) -> list[RemoteEntry] | None:
        """The folder's files and folders; None when rclone should answer (no such folder, odd names)."""
        entries = []
        try:
            with os.scandir(self.root) as it:
                for item in it:
                    if not self.handles(item.name):
                        return None
                    if item.is_symlink():
                        continue
                    try:
                        st = item.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # renamed or removed since readdir (another run's temp file): not there
                    if stat.S_ISDIR(st.st_mode):
                        entries.append(RemoteEntry(item.name, st.st_size, _mtime(st), True))
                    elif stat.S_ISREG(st.st_mode):
                        entries.append(RemoteEntry(item.name, st.st_size, _mtime(st)))
        except FileNotFoundError:  # the folder itself, from scandir: entries gone since readdir are skipped above
            return []  # as rclone: no folder yet, no backups
        except OSError:
            return None
        entries.sort(key=lambda e: e.name)  # rclone lists in name order (code points: UTF-8's byte order)
        return entries

    def stat(self, name: str) -> RemoteEntry | None:
        """*name*'s entry, or None when there is no regular file or folder of that name."""
        try:
            st = os.stat(self._path(name), follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(st.st_mode):
            return RemoteEntry(name, st.st_size, _mtime(st), True)
        return RemoteEntry(name, st.st_size, _mtime(st)) if stat.S_ISREG(st.st_mode) else None

    def move(self, src: str, dst: str) -> None:
        """``rename(2)``: atomic, and like ``rclone moveto`` it replaces a file of the new name."""
        os.rename(self._path(src), self._path(dst))

    def write(self, name: str, data: bytes, temp: str) -> None:
        """Write *data* under *temp* (created exclusively, mode 0600), then rename it to *name*."""
        path = self._path(temp)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(path, self._path(name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise


def _mtime(st: os.stat_result) -> datetime:
    """The modification time truncated to microseconds, as dbstash reads rclone's nanoseconds."""
    seconds, ns = divmod(st.st_mtime_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=ns // 1000)


__all__ = ["RCLONE_ONLY_FLAGS", "LocalFolder"]

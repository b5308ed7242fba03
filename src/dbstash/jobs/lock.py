"""The cross-process run lock (``BACKUP_LOCK_FILE``): an flock that dies with its holder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dbstash.errors import BackupFailed, ConfigError

if TYPE_CHECKING:
    from dbstash.settings.config import Settings


class LockHeld(BackupFailed):
    """Another dbstash process holds the lock file: this run was skipped."""


@contextlib.contextmanager
def run_lock(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on *path* for the block; raise `LockHeld` if another process has it.

    The kernel drops an flock when its holder dies, however it dies, so a killed process never
    leaves a stale lock behind. The file itself is left in place (removing it would race).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError("BACKUP_LOCK_FILE", f"a path dbstash can create and lock ({exc.strerror})", path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockHeld(f"another backup is running (lock file {path} is held): this run was skipped") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the flock


def job_lock(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """The run lock of *settings*' job (``BACKUP_LOCK_FILE``), or nothing when ``BACKUP_LOCK=false``."""
    return run_lock(settings.lock_path) if settings.service.lock else contextlib.nullcontext()

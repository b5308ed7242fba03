"""The uploads of [`RcloneCliStorage`][dbstash.RcloneCliStorage]: ``rclone rcat`` to a partial
name (then renamed), or to the final name of an object store under a guardian; and the rclones they
start in advance for the small objects beside a backup. Each upload owns what it starts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from typing import TYPE_CHECKING

import anyio

from dbstash.errors import StorageError, UploadFailed
from dbstash.logs import get_logger
from dbstash.parts.process import ChildProcess, grow_pipe
from dbstash.parts.sink import BeforePublish, Committed, RemoteEntry
from dbstash.storage.base import ABORT_DELETE_TIMEOUT, INTERRUPT_GRACE, WRITE_TRIES, Upload, delete_refused
from dbstash.storage.guardian import GUARDIAN_GRACE, GuardedProcess

if TYPE_CHECKING:
    from dbstash.storage.rclone_cli import RcloneCliStorage

log = get_logger("dbstash.storage")

#: The commit waits ``commit_timeout`` plus this many seconds per GiB stored: completing a multipart
#: upload is assembled by the server (10 GB took 15-20 s on ``rclone serve s3``; AWS says minutes).
COMMIT_SECONDS_PER_GIB = 10.0


class RcloneUpload(Upload):
    """``rclone rcat`` writing to a partial name. EOF reaches rclone only in `commit()`."""

    def __init__(
        self,
        storage: RcloneCliStorage,
        proc: ChildProcess,
        final_name: str,
        partial: str,
        *,
        alternative: str | None,
        writers: SidecarWriters,
    ) -> None:
        self._storage = self._catalog = storage
        self._proc = proc
        self._writers = writers
        self.final_name = final_name
        self.partial_name = partial
        self.alternative = alternative
        assert proc.popen.stdin is not None
        self._stdin = proc.popen.stdin
        grow_pipe(self._stdin.fileno())
        self._done = False
        self._expected = 0

    def fileno(self) -> int:
        return self._stdin.fileno()

    def failure_detail(self) -> str:
        return log_text(self._proc.stderr.text())

    @property
    def process(self) -> ChildProcess:
        """The rclone child (tests use it to kill rclone mid-stream)."""
        return self._proc

    async def _finish(self) -> None:
        # Only now may rclone see end of input: the dump has exited 0.
        self._stdin.close()
        limit = commit_limit(self._storage.options.commit_timeout, self._expected)
        try:
            with anyio.fail_after(limit):
                status = await self._proc.wait()
        except TimeoutError:
            raise UploadFailed(f"rclone did not finish the upload within {limit:.0f}s") from None
        if status != 0:
            raise UploadFailed(
                f"rclone rcat {self._proc.describe_exit(status)}", stderr_tail=log_text(self._proc.stderr.text())
            )

    async def commit(self, size: int, *, before_publish: BeforePublish | None = None) -> Committed:
        self._expected = size
        try:
            return await super().commit(size, before_publish=before_publish)
        finally:  # the manifest's rclone started in advance, if the name changed or no manifest was written
            await self._writers.stop()

    async def write_sidecar(self, name: str, data: bytes) -> None:
        await self._writers.write(name, data)

    async def interrupt(self) -> None:
        # SIGTERM: rclone's atexit handlers abort an S3 multipart upload; EOF would commit it.
        # stdin stays open until rclone is gone, so it never sees a clean end of input.
        await self._proc.stop(grace=INTERRUPT_GRACE, sig=signal.SIGTERM)

    async def abort(self, *, timeout: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        await self.interrupt()
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            # bounded: when the remote itself is what failed, rclone would retry for minutes
            limit = min(timeout or ABORT_DELETE_TIMEOUT, self._storage.options.op_timeout)
            await self._storage.delete(self.partial_name, timeout=limit)
        except Exception as exc:  # the remote may be what failed: the partial name keeps it harmless
            log.warning("could not remove partial upload %s: %s", self.partial_name, exc)
        await self._writers.stop()


class DirectRcloneUpload(Upload):
    """``rclone rcat`` to the final name of an object store, under a guardian.

    The object appears only when rclone completes the upload, after `commit()` released the
    pipe; every failure before that (including SIGKILL of dbstash) leaves no object: the guardian
    stops rclone without it ever seeing the end of its input, which aborts the multipart upload
    (after a SIGKILL of rclone an incomplete one stays, invisible: ``dbstash prune`` runs ``rclone
    backend cleanup`` on S3, and a bucket lifecycle rule expires them).
    """

    def __init__(
        self,
        storage: RcloneCliStorage,
        guarded: GuardedProcess,
        name: str,
        claim: str | None,
        *,
        writers: SidecarWriters,
        listing: tuple[RemoteEntry, ...] | None,
    ) -> None:
        self._storage = self._catalog = storage
        self._guard = guarded
        self._writers = writers
        #: the claim's listing (the folder before this backup), handed back by the commit
        self._listing = listing
        self.final_name = name
        #: the zero-byte claim on the name (templates with only the time), removed after the commit
        self.partial_name = claim or ""
        self._done = False

    def fileno(self) -> int | None:
        return self._guard.fd

    @property
    def process(self) -> ChildProcess:
        """The guardian (its exit status is rclone's); tests kill it or dbstash to prove the invariant."""
        return self._guard.process

    def failure_detail(self) -> str:
        return log_text(self._guard.process.stderr.text())

    async def _finish(self) -> None:  # pragma: no cover - commit() is this upload's whole protocol
        raise NotImplementedError

    async def commit(self, size: int, *, before_publish: BeforePublish | None = None) -> Committed:
        """Write the manifest, then let rclone see the end of input and complete the upload; confirm the size."""
        name, expected_size = self.final_name, size
        ok = False
        try:
            await self.store_sidecars(name, before_publish)
            self._guard.release()
            proc = self._guard.process
            limit = commit_limit(self._storage.options.commit_timeout, expected_size)
            try:
                with anyio.fail_after(limit):
                    status = await proc.wait()
            except TimeoutError:
                raise UploadFailed(f"rclone did not finish the upload within {limit:.0f}s") from None
            if status != 0:
                raise UploadFailed(f"rclone rcat {proc.describe_exit(status)}", stderr_tail=self.failure_detail())
            stored = stats_bytes(proc.stderr.text())
            if stored is None:  # no stats line (an old rclone?): ask the remote
                entry = await self._storage.stat(name)
                stored = entry.size if entry is not None else None
            if stored is not None and stored >= 0 and stored != expected_size:
                raise UploadFailed(f"the remote holds {stored} bytes, {expected_size} were sent")
            ok = True
        finally:
            if not ok:
                with anyio.CancelScope(shield=True):
                    await self._kill()
                    # whatever completed under the name is not this backup: remove it and its manifest
                    with anyio.move_on_after(ABORT_DELETE_TIMEOUT * 2), contextlib.suppress(Exception):
                        await self._storage.delete_many([name, *self._storage.sidecars(name)])
                    await self._drop_claim()  # on its own: a refused deletion is explained (write-only hosts)
        self._done = self.committed = True
        await self._drop_claim()
        await self._writers.stop()  # if before_publish did not use them
        return Committed(name, size, self._listing)

    async def write_sidecar(self, name: str, data: bytes) -> None:
        await self._writers.write(name, data)

    async def interrupt(self) -> None:
        self._guard.cut()

    async def _kill(self) -> None:
        """The guardian stops rclone (SIGTERM, then SIGKILL) with the pipe still open; then close it."""
        self._guard.cut()
        proc = self._guard.process
        with anyio.move_on_after(INTERRUPT_GRACE + 3):
            await proc.wait()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the guardian and rclone (its process group)
            await proc.wait()
        self._guard.close_fd()
        await self._writers.stop()

    async def _drop_claim(self) -> None:
        if self.partial_name:
            claim, self.partial_name = self.partial_name, ""
            try:
                await self._storage.delete(claim, timeout=ABORT_DELETE_TIMEOUT)
            except Exception as exc:  # a leftover claim is a zero-byte partial: stale-partial clean-up removes it
                why = exc.summary if isinstance(exc, StorageError) else str(exc)
                if delete_refused(exc):
                    why += " (a credential that may write but not delete: prune, run with delete rights, removes it)"
                log.warning("could not remove the claim %s: %s", claim, why)

    async def abort(self, *, timeout: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        with anyio.CancelScope(shield=True):
            await self._kill()
            await self._drop_claim()


class SidecarWriters:
    """The rclones an upload started in advance for the small objects beside its backup (manifest,
    signature), by object name. The upload owns them: each is used once or stopped by `stop()`."""

    def __init__(self, storage: RcloneCliStorage, name: str | None) -> None:
        self._storage = storage
        self._idle: dict[str, GuardedProcess] = {}
        for key in storage.sidecars(name) if name is not None else ():
            if (guarded := storage.start_writer(key)) is not None:
                self._idle[key] = guarded

    async def write(self, name: str, data: bytes) -> None:
        """Store *name*: the rclone started for it is the first attempt, fresh ones the others."""
        guarded = self._idle.pop(name, None)
        if guarded is None:
            await self._storage.write_verified(name, data)
            return
        try:
            await self._storage.write_prestarted(guarded, name, data)
        except StorageError as exc:
            log.warning("writing %s failed (attempt 1 of %d): %s", name, WRITE_TRIES, exc)
            await self._storage.write_copies(name, data, first=1, problem=str(exc))

    async def stop(self) -> None:
        """Stop every rclone not used (it never saw an end of input: it stores nothing)."""
        while self._idle:
            _, guarded = self._idle.popitem()
            await stop_guarded(guarded)


def commit_limit(base: float, size: int) -> float:
    """How long rclone may take to finish an upload of *size* bytes after its end of input."""
    return base + COMMIT_SECONDS_PER_GIB * size / (1 << 30)


async def stop_guarded(guarded: GuardedProcess) -> None:
    """Cut the lifeline (the guardian stops rclone without it seeing an end of input), close the pipe, reap."""
    guarded.cut()
    guarded.close_fd()
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(GUARDIAN_GRACE + 3):
            await guarded.process.wait()
        if guarded.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(guarded.process.pid, signal.SIGKILL)
            await guarded.process.wait()


def log_lines(text: str) -> list[dict[str, object]]:
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    found.append(item)
    return found


def stats_bytes(text: str) -> int | None:
    """The bytes rclone reports it uploaded, from its final JSON stats line (None if there is none)."""
    for item in reversed(log_lines(text)):
        stats = item.get("stats")
        if isinstance(stats, dict) and isinstance(stats.get("bytes"), int):
            return int(stats["bytes"]) if not stats.get("errors") else -1
    return None


#: rclone's text-log lines below ERROR (``2026/01/02 03:04:05 NOTICE: Config file ... not found``)
_CHATTER = re.compile(r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?(?:NOTICE|INFO|DEBUG)\s*:")
_QUIET_LEVELS = ("notice", "info", "debug")


def log_text(text: str) -> str:
    """What rclone's log says went wrong, for an error message: its JSON log as ``level: message``
    lines (reading like the text log), without the NOTICE/INFO/DEBUG chatter (a missing config
    file, ...) unless nothing else is there."""
    items = log_lines(text)
    if not items:
        lines = text.splitlines()
        kept = [line for line in lines if not _CHATTER.match(line.strip())]
        return "\n".join(kept) if kept else text
    shown = [i for i in items if "stats" not in i]
    loud = [i for i in shown if str(i.get("level", "")).lower() not in _QUIET_LEVELS] or shown
    return "\n".join(f"{i.get('level', '')}: {str(i.get('msg', '')).strip()}" for i in loud)

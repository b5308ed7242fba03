"""Directory and tar modes: the dump goes to a private temp folder first, then to the remote.

``BACKUP_MODE=directory`` copies the folder with ``rclone copy`` to ``<remote>/<name>/``, checks every
file and size with ``lsjson -R``, then writes the manifest ``<name>.dbstash-manifest.json`` beside it:
**the manifest is the completion marker**. Listing, retention and restore take a folder for a backup
only when its manifest exists, so a run that fails at any point leaves nothing complete-looking
(and its folder is purged on the way out). A marker works on every backend; moving a finished
folder from a partial name would be a rename on local but a full server-side copy on S3.

``BACKUP_MODE=tar`` streams ``tar -cf -`` of the folder through the normal stream pipeline (partial
name, commit, optional gzip/zstd), so the tar itself never touches the disk.

The temp folder (``BACKUP_TEMP_DIR``, one ``mkdtemp`` subfolder per run, mode 0700) is removed on
success, failure, timeout and cancellation. A full disk is reported naming ``BACKUP_TEMP_DIR``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from dbstash.engines.base import DumpCommand, Engine
from dbstash.errors import DumpFailed, StorageError
from dbstash.logs import get_logger
from dbstash.parts.process import grow_pipe
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.settings.config import Settings
from dbstash.storage.base import Storage

log = get_logger("dbstash.modes")

#: The purge of a failed directory upload gives up after this long (the missing manifest keeps it harmless).
PURGE_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class FolderStats:
    """What a multi-file dump produced: relative path -> (size, sha256), and totals."""

    files: dict[str, tuple[int, str]]

    @property
    def size(self) -> int:
        return sum(size for size, _ in self.files.values())

    @property
    def sha256(self) -> str:
        """A digest of the sorted ``path size sha256`` lines: one checksum for the whole folder."""
        listing = "".join(f"{p} {s} {h}\n" for p, (s, h) in sorted(self.files.items()))
        return hashlib.sha256(listing.encode()).hexdigest()


@contextlib.asynccontextmanager
async def work_folder(settings: Settings) -> AsyncIterator[str]:
    """A private folder under ``BACKUP_TEMP_DIR`` for one run, removed whatever happens."""
    try:
        os.makedirs(settings.temp_dir, mode=0o700, exist_ok=True)
        path = tempfile.mkdtemp(prefix="run-", dir=settings.temp_dir)
    except OSError as exc:
        where = f"BACKUP_TEMP_DIR ({settings.temp_dir})"
        raise DumpFailed(f"cannot create a work folder in {where}: {exc.strerror}") from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _disk_full(path: str, stderr: str) -> bool:
    if "No space left on device" in stderr:
        return True
    with contextlib.suppress(OSError):
        return shutil.disk_usage(path).free < 1 << 20
    return False


def folder_stats(root: str) -> FolderStats:
    """Every file under *root* with its size and sha256."""
    files: dict[str, tuple[int, str]] = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            digest = hashlib.sha256()
            with open(full, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            files[os.path.relpath(full, root)] = (os.path.getsize(full), digest.hexdigest())
    return FolderStats(files)


async def dump_to_folder(settings: Settings, engine: Engine, outdir: str) -> DumpCommand:
    """Run the engine's multi-file dump into *outdir*; raise DumpFailed (naming BACKUP_TEMP_DIR when it is full)."""
    command = await engine.files_command(settings.connection, settings.dump_options, outdir)
    log.debug("dump command: %s", command.display())
    split_error: list[BaseException] = []
    dump = command.start(GLOBAL_REDACTOR, stdout=subprocess.PIPE if engine.splits_stream else subprocess.DEVNULL)
    splitter: threading.Thread | None = None
    if engine.splits_stream:
        assert dump.popen.stdout is not None
        fd = dump.popen.stdout.fileno()
        grow_pipe(fd)

        def split() -> None:
            try:
                engine.split_stream(fd, outdir)
            except BaseException as exc:  # reported below, after the dump tool is stopped
                split_error.append(exc)
                dump.send_signal(15)

        splitter = threading.Thread(target=split, name="split", daemon=True)
        splitter.start()
    try:
        status = await dump.wait()
        if splitter is not None:
            await anyio.to_thread.run_sync(splitter.join, abandon_on_cancel=True)
    finally:
        if dump.returncode is None:
            with anyio.CancelScope(shield=True):
                await dump.stop(grace=5.0)
        if dump.popen.stdout is not None:
            dump.popen.stdout.close()
    stderr = dump.stderr.text()
    err = split_error[0] if split_error else None
    if _disk_full(outdir, stderr) or (isinstance(err, OSError) and err.errno == errno.ENOSPC):
        raise DumpFailed(
            f"BACKUP_TEMP_DIR ({settings.temp_dir}) ran out of space during the dump: "
            "give it room for the whole dump, or use BACKUP_MODE=stream (no local disk)",
            exit_status=status,
            stderr_tail=stderr,
        )
    if err is not None:
        raise DumpFailed(f"splitting the dump into files failed: {err}", exit_status=status, stderr_tail=stderr)
    if status != 0:
        raise DumpFailed(f"{dump.name} {dump.describe_exit(status)}", exit_status=status, stderr_tail=stderr)
    return command


async def upload_folder(storage: Storage, local: str, name: str, stats: FolderStats) -> None:
    """``rclone copy`` + check; on any failure the remote folder is purged (bounded) before re-raising."""
    try:
        await storage.upload_dir(local, name, {p: s for p, (s, _) in stats.files.items()})
    except BaseException:
        with anyio.CancelScope(shield=True), anyio.move_on_after(PURGE_TIMEOUT):
            try:
                await storage.purge(name)
            except StorageError as exc:
                log.warning("could not remove the incomplete folder %s (it has no manifest): %s", name, exc)
        raise


def tar_command(folder: str) -> DumpCommand:
    """``tar -cf -`` of *folder*'s content, for the stream pipeline."""
    tar = shutil.which("tar") or "tar"
    return DumpCommand((tar, "-C", folder, "-cf", "-", "."), {})

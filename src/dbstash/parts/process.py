"""Child processes: a scrubbed environment, big pipes, a bounded stderr tail, and a clean stop."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence

import anyio

from dbstash.errors import ToolNotFound
from dbstash.logs import get_logger

log = get_logger("dbstash.process")

#: Variables dbstash itself consumes. They never reach a child: some hold secrets, and rclone would
#: read the spec's base64 ``RCLONE_CONFIG`` as a path.
DBSTASH_ENV_VARS = frozenset(
    {
        "DB_URI",
        "DB_URI_FILE",
        "DB_PASSWORD",
        "DB_PASSWORD_FILE",
        "DB_HOST",
        "DB_PORT",
        "DB_NAME",
        "DB_USER",
        "DB_ENGINE",
        "DB_AUTH_SOURCE",
        "RCLONE_CONFIG",
        "RCLONE_CONFIG_FILE",
        "RCLONE_REMOTE",
        "RCLONE_EXTRA_ARGS",
        "DUMP_EXTRA_ARGS",
        "PGPASSWORD",
    }
)
#: Whole families of dbstash's variables: the DB_* connection settings, every NOTIFY_* (webhook
#: and ping URLs carry tokens, the SMTP settings a password) and RCLONE_RC_* (the rc daemon's
#: password). Prefixes, so a new one cannot be missed.
DBSTASH_ENV_PREFIXES = ("DB_", "NOTIFY_", "RCLONE_RC_", "VERIFY_", "AGE_")
#: rclone's own variables (``RCLONE_CONFIG_<REMOTE>_SECRET_ACCESS_KEY``...): for rclone only, never a
#: dump tool, a restore tool or a hook.
RCLONE_ENV_PREFIX = "RCLONE_"
#: rclone creates files and folders with this umask: a backup on a local (or mounted) remote is
#: readable by its owner only (0600 files, 0700 folders), never by every local user.
PRIVATE_UMASK = 0o077
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
STDERR_TAIL_BYTES = 16 * 1024


def child_base_env(environ: Mapping[str, str] | None = None, *, rclone: bool = False) -> dict[str, str]:
    """The environment every child starts from: the process's own, minus dbstash's variables.

    Only rclone itself (*rclone*) keeps rclone's ``RCLONE_*`` variables (remotes defined in the
    environment carry their keys there); every other child gets none of them.
    """
    src = os.environ if environ is None else environ
    drop = DBSTASH_ENV_PREFIXES if rclone else (*DBSTASH_ENV_PREFIXES, RCLONE_ENV_PREFIX)
    return {k: v for k, v in src.items() if k not in DBSTASH_ENV_VARS and not k.startswith(drop)}


async def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of *data* to the pipe *fd* without blocking the event loop (the fd is made non-blocking).

    Raises BrokenPipeError when the reader is gone (callers say whose failure that is).
    """
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        await anyio.wait_writable(fd)
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue


def grow_pipe(fd: int) -> None:
    """Raise a pipe's buffer to 1 MiB so full-size reads and writes need fewer wake-ups (best effort)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)


class StderrTail:
    """Drains a child's stderr in a thread, keeping only the last lines; optionally logs each line."""

    def __init__(self, stream: int, name: str, redact: Callable[[str], str], log_lines: bool = True) -> None:
        self._fd = stream
        self._name = name
        self._redact = redact
        self._log_lines = log_lines
        self._buf: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._thread = threading.Thread(target=self._run, name=f"stderr-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = b""
        try:
            while True:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._keep(line)
        finally:
            if pending:
                self._keep(pending)
            os.close(self._fd)

    def _keep(self, line: bytes) -> None:
        if self._log_lines and line.strip():
            log.debug("%s: %s", self._name, self._redact(line.decode(errors="replace")))
        self._buf.append(line)
        self._size += len(line) + 1
        while self._size > STDERR_TAIL_BYTES and len(self._buf) > 1:
            self._size -= len(self._buf.popleft()) + 1

    def text(self, wait: float = 2.0) -> str:
        """The kept tail, redacted; waits briefly for the reader to reach end of file."""
        self._thread.join(wait)
        lines = [b.decode(errors="replace") for b in list(self._buf)]
        return self._redact("\n".join(lines[-20:]).strip())


class ChildProcess:
    """A child in its own session (a terminal's Ctrl-C reaches dbstash, which then stops it in order)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        name: str,
        redact: Callable[[str], str],
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = subprocess.DEVNULL,
        pass_fds: Sequence[int] = (),
        umask: int = -1,
    ) -> None:
        self.name = name
        try:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=dict(env),
                start_new_session=True,
                pass_fds=tuple(pass_fds),
                bufsize=0,
                umask=umask,
            )
        except OSError as exc:
            raise ToolNotFound(f"cannot start {name} ({argv[0]}): {exc.strerror}") from None
        assert self.popen.stderr is not None
        err_fd = os.dup(self.popen.stderr.fileno())
        self.popen.stderr.close()
        self.stderr = StderrTail(err_fd, name, redact)
        log.debug("started %s pid=%s", name, self.popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> int:
        """Wait for exit without blocking the event loop; cancellable."""
        if self.popen.poll() is not None:
            return self.popen.returncode
        return await anyio.to_thread.run_sync(self.popen.wait, abandon_on_cancel=True)

    def send_signal(self, sig: int) -> None:
        """Send *sig* to the child if it is still running."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)

    async def stop(self, grace: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """Send *sig*, wait up to *grace* seconds, then SIGKILL. Returns the exit status."""
        if self.popen.poll() is not None:
            return self.popen.returncode
        self.send_signal(sig)
        with anyio.move_on_after(grace):
            return await self.wait()
        self.send_signal(signal.SIGKILL)
        return await self.wait()

    def describe_exit(self, status: int) -> str:
        """``exited with status 3`` / ``was killed by SIGKILL``."""
        if status < 0:
            try:
                return f"was killed by {signal.Signals(-status).name}"
            except ValueError:
                return f"was killed by signal {-status}"
        return f"exited with status {status}"

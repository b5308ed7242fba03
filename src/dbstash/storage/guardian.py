"""The guardian: rclone must never see the end of its input because dbstash died.

On object stores dbstash uploads straight to the final name (no server-side copy at commit): the
object appears when rclone completes the upload, which rclone does when its stdin ends. If dbstash
held the only write end of that pipe, a SIGKILL of dbstash would close it, and rclone would take
the end of input for a complete stream and publish a truncated backup (see the field notes).

So rclone is started by a small guardian process that holds a second write end of rclone's stdin
from before rclone exists, and a *lifeline* pipe whose only writer is dbstash:

- dbstash commits by writing ``commit`` to the lifeline and closing its own write end: the guardian
  closes its copy, rclone sees the end of input, completes the upload, and the guardian exits with
  rclone's status;
- on an abort, or when dbstash dies at any moment (the kernel closes the lifeline), the guardian
  reads end-of-file without ``commit``: it stops rclone (SIGTERM, which aborts a multipart upload;
  SIGKILL after a grace) *while still holding the write end*, so rclone never sees a clean end;
- rclone runs with ``PR_SET_PDEATHSIG=SIGKILL``: should the guardian itself be killed, rclone dies
  with it (dbstash, if alive, still holds a write end, and kills the process group on abort).

The guardian is a few lines of Python started with ``-I -S`` (no site, no dbstash import): ~15 ms,
spent while dbstash still prepares: it is started first and told rclone's command line on the
lifeline (``<length>\\n`` and the NUL-separated arguments) once that is known.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence

from dbstash.process import ChildProcess, grow_pipe

#: Seconds rclone gets after SIGTERM (it aborts the multipart upload) before SIGKILL.
GUARDIAN_GRACE = 2.0

GUARDIAN_CODE = r"""
import os, signal, sys, time
life, hold = int(sys.argv[1]), int(sys.argv[2])
grace = float(sys.argv[3])
try:
    import ctypes
    prctl = ctypes.CDLL(None, use_errno=True).prctl
except Exception:
    prctl = None
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # dbstash stops us through the lifeline, not signals
signal.signal(signal.SIGINT, signal.SIG_IGN)
said = b""
def more():
    global said
    while True:
        try:
            chunk = os.read(life, 4096)
        except InterruptedError:
            continue
        said += chunk
        return bool(chunk)
# first the command: "<length>\n" and that many bytes of NUL-separated arguments
while b"\n" not in said:
    if not more():
        os._exit(143)  # dbstash gave up (or died) before the command: nothing was started
head, said = said.split(b"\n", 1)
while len(said) < int(head):
    if not more():
        os._exit(143)
argv = [os.fsdecode(a) for a in said[: int(head)].split(b"\0")]
said = said[int(head) :]
pid = os.fork()
if pid == 0:
    os.close(life)
    os.close(hold)
    if prctl is not None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(137)  # the guardian died before prctl took effect
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execv(argv[0], argv)
os.close(0)
while more():
    pass
if said.strip() == b"commit":
    os.close(hold)
else:
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, ChildProcessError):
        pass
status = 0
try:
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
except ChildProcessError:
    status = 0 if said.strip() == b"commit" else 143
os._exit(status if status >= 0 else 128 - status)
"""


class GuardedProcess:
    """rclone reading a pipe, under a guardian (see the module docstring).

    :attr:`fd` is dbstash's write end of rclone's stdin; :meth:`release` lets rclone see the end of
    input (the commit); :meth:`cut` makes the guardian stop rclone without it ever seeing one.
    :attr:`process` is the guardian, whose exit status is rclone's.

    Without *argv* the guardian starts at once and waits for :meth:`start`: its interpreter starts
    while dbstash still works out rclone's command line (the claim, the size estimate).
    """

    def __init__(
        self,
        argv: Sequence[str] | None = None,
        *,
        env: Mapping[str, str],
        redact: Callable[[str], str],
        pass_fds: Sequence[int] = (),
        umask: int = -1,
        grace: float = GUARDIAN_GRACE,
    ) -> None:
        r, w = os.pipe()
        life_r, life_w = os.pipe()
        try:
            grow_pipe(w)
            self.process = ChildProcess(
                [sys.executable, "-I", "-S", "-c", GUARDIAN_CODE, str(life_r), str(w), str(grace)],
                env=env,
                name="rclone",
                redact=redact,
                stdin=r,
                pass_fds=(life_r, w, *pass_fds),
                umask=umask,
            )
        except BaseException:
            for fd in (w, life_w):
                os.close(fd)
            raise
        finally:
            os.close(r)
            os.close(life_r)
        self.fd: int | None = w
        self._lifeline: int | None = life_w
        self.started = False
        if argv is not None:
            self.start(argv)

    def start(self, argv: Sequence[str]) -> None:
        """Have the guardian start *argv* (rclone) reading the pipe; once."""
        if self.started or self._lifeline is None:
            raise RuntimeError("the guardian was already given its command (or was cut)")
        payload = b"\0".join(os.fsencode(a) for a in argv)
        message = b"%d\n" % len(payload) + payload
        view = memoryview(message)
        while view:  # a command line is far below a pipe's buffer: this does not wait
            view = view[os.write(self._lifeline, view) :]
        self.started = True

    def release(self) -> None:
        """The dump's verdict is good and every byte was written: rclone may complete the upload."""
        if self._lifeline is not None:
            try:
                os.write(self._lifeline, b"commit\n")
            finally:
                self._close_lifeline()
        self.close_fd()

    def cut(self) -> None:
        """Abort: the guardian stops rclone while the pipe stays open (no clean end of input)."""
        self._close_lifeline()

    def close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None


__all__ = ["GUARDIAN_GRACE", "GuardedProcess"]

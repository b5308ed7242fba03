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

The guardian is a dozen lines of bash (``bash -p``: no start-up files, no functions from the
environment), with util-linux's ``setpriv --pdeathsig KILL`` in front of rclone: ~2 ms of CPU
where a Python interpreter costs ~15 ms, and a run starts two (the backup's, its manifest's).
Where bash or setpriv is missing, the same protocol runs in a few lines of Python (``-I -S``).
"""

from __future__ import annotations

import functools
import os
import shutil
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
argv = sys.argv[4:]
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
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:  # reaped here: never signalled again (its pid may be another process's by now)
            status = os.waitstatus_to_exitcode(raw)
            os._exit(status if status >= 0 else 128 - status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid is still rclone's
status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
os._exit(status if status >= 0 else 128 - status)
"""


#: The guardian in bash: ``$1`` the lifeline's read end, ``$2`` the pipe's second write end, ``$3``
#: the grace, ``$4`` setpriv, then rclone's command line. rclone gets the pipe as stdin and neither
#: fd; it inherits SIGINT ignored (as any background job of a script; nothing sends it one) and
#: keeps SIGTERM (Go installs its own handler whatever it inherits), which aborts its upload.
GUARDIAN_BASH = r"""
trap '' TERM INT
life=$1 hold=$2 grace=$3 setpriv=$4; shift 4
eval '"$setpriv" --pdeathsig KILL -- "$@" <&0 '"$hold>&- $life<&-"' &'
pid=$!
exec 0<&-
said=
while IFS= read -r -u "$life" line; do said=$line; done
if [ "$said" = commit ]; then
  eval "exec $hold>&-"
  builtin wait "$pid"; exit $?
fi
builtin kill -TERM "$pid" 2>/dev/null
ticks=$(( ${grace%.*} * 20 + 1 ))
while (( ticks-- > 0 )); do  # until rclone is a zombie (exited, not yet reaped) or the grace is over
  read -r _ _ state _ 2>/dev/null < "/proc/$pid/stat" || break
  [ "$state" = Z ] && break
  sleep 0.05 2>/dev/null
done
builtin kill -KILL "$pid" 2>/dev/null  # not reaped yet: the pid is still rclone's
builtin wait "$pid"; status=$?
exit "$status"
"""


@functools.cache
def _tools() -> tuple[str, str] | None:
    """``(bash, setpriv)`` when both are installed (else the Python guardian is used); looked up once."""
    bash, setpriv = shutil.which("bash"), shutil.which("setpriv")
    return (bash, setpriv) if bash and setpriv else None


def guardian_argv(life: int, hold: int, grace: float, argv: Sequence[str]) -> list[str]:
    """The guardian's command line: the bash one where :func:`_tools` found bash and setpriv."""
    tools = _tools()
    if tools is not None:
        bash, setpriv = tools
        return [bash, "-p", "-c", GUARDIAN_BASH, "dbstash-guardian", str(life), str(hold), str(grace), setpriv, *argv]
    return [sys.executable, "-I", "-S", "-c", GUARDIAN_CODE, str(life), str(hold), str(grace), *argv]


class GuardedProcess:
    """rclone reading a pipe, under a guardian (see the module docstring).

    :attr:`fd` is dbstash's write end of rclone's stdin; :meth:`release` lets rclone see the end of
    input (the commit); :meth:`cut` makes the guardian stop rclone without it ever seeing one.
    :attr:`process` is the guardian, whose exit status is rclone's. *argv* is rclone's command line.
    """

    def __init__(
        self,
        argv: Sequence[str],
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
                guardian_argv(life_r, w, grace, argv),
                env=dict(env),
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

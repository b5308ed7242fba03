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
where a Python interpreter costs ~15 ms, and a run starts two (the backup's, its manifest's). One
implementation: both tools are part of every Linux system dbstash targets (Debian marks them
essential; the images have them), and without them the upload fails before a byte is sent, saying so.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Mapping, Sequence

from dbstash.errors import UploadFailed
from dbstash.parts.process import ChildProcess, grow_pipe

#: Seconds rclone gets after SIGTERM (it aborts the multipart upload) before SIGKILL.
GUARDIAN_GRACE = 2.0

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
    """``(bash, setpriv)`` when both are installed; looked up once."""
    bash, setpriv = shutil.which("bash"), shutil.which("setpriv")
    return (bash, setpriv) if bash and setpriv else None


def guardian_argv(life: int, hold: int, grace: float, argv: Sequence[str]) -> list[str]:
    """The guardian's command line (bash, with setpriv in front of rclone)."""
    tools = _tools()
    if tools is None:
        raise UploadFailed(
            "rclone's guardian needs bash and setpriv (util-linux) on PATH; install them "
            "(Debian: bash and util-linux are essential packages)"
        )
    bash, setpriv = tools
    return [bash, "-p", "-c", GUARDIAN_BASH, "dbstash-guardian", str(life), str(hold), str(grace), setpriv, *argv]


class GuardedProcess:
    """rclone reading a pipe, under a guardian (see the module docstring).

    `fd` is dbstash's write end of rclone's stdin; `release()` lets rclone see the end of
    input (the commit); `cut()` makes the guardian stop rclone without it ever seeing one.
    `process` is the guardian, whose exit status is rclone's. *argv* is rclone's command line.
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

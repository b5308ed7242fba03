"""The guardian (bash + setpriv) with a real child.

The child stands in for rclone: it reads its stdin to the end, then writes ``EOF <bytes>`` to a
file and exits with a given status; on SIGTERM it writes ``TERM`` instead. Whatever happens, the
child must see the end of its input only after :meth:`GuardedProcess.release`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import anyio
import pytest

from dbstash.errors import UploadFailed
from dbstash.storage import guardian
from dbstash.storage.guardian import GuardedProcess, guardian_argv

CHILD = r"""
import os, signal, sys
out, status, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def term(*_):
    with open(out, "a") as fh:
        fh.write("TERM\n")
    os._exit(143)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else term)
with open(out + ".pid", "w") as fh:
    fh.write(str(os.getpid()))
n = 0
while chunk := os.read(0, 65536):
    n += len(chunk)
with open(out, "a") as fh:
    fh.write(f"EOF {n}\n")
sys.exit(status)
"""


@pytest.fixture
def kind() -> str:
    if guardian._tools() is None:
        pytest.fail("bash and setpriv are installed by make test: the guardian must be testable")
    return "bash"


def start(tmp_path: Path, *, status: int = 0, mode: str = "normal", grace: float = 0.3) -> tuple[GuardedProcess, Path]:
    out = tmp_path / "child.txt"
    argv = [sys.executable, "-c", CHILD, str(out), str(status), mode]
    return GuardedProcess(argv, env=dict(os.environ), redact=str, grace=grace), out


def child_pid(out: Path) -> int:
    pid_file = out.with_name(out.name + ".pid")
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    return int(pid_file.read_text())


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_command_line_names_the_implementation(kind: str) -> None:
    argv = guardian_argv(5, 6, 2.0, ["/bin/rclone", "rcat", "x:y"])
    assert argv[-3:] == ["/bin/rclone", "rcat", "x:y"]
    assert os.path.basename(argv[0]) == kind and os.path.basename(argv[-4]) == "setpriv"


def test_without_bash_or_setpriv_the_upload_fails_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guardian, "_tools", lambda: None)
    with pytest.raises(UploadFailed, match=r"bash and setpriv \(util-linux\)"):
        guardian_argv(5, 6, 2.0, ["/bin/rclone", "rcat", "x:y"])


def test_release_lets_the_child_see_every_byte_and_the_end(kind: str, tmp_path: Path) -> None:
    async def main() -> int:
        guarded, _ = start(tmp_path)
        assert guarded.fd is not None
        os.write(guarded.fd, b"x" * 100_000)
        guarded.release()
        return await guarded.process.wait()

    assert anyio.run(main) == 0
    assert (tmp_path / "child.txt").read_text() == "EOF 100000\n"


def test_the_childs_exit_status_is_the_guardians(kind: str, tmp_path: Path) -> None:
    async def main() -> int:
        guarded, _ = start(tmp_path, status=7)
        guarded.release()
        return await guarded.process.wait()

    assert anyio.run(main) == 7


def test_cut_stops_the_child_without_an_end_of_input(kind: str, tmp_path: Path) -> None:
    async def main() -> int:
        guarded, out = start(tmp_path)
        assert guarded.fd is not None
        os.write(guarded.fd, b"partial")
        child_pid(out)
        guarded.cut()
        status = await guarded.process.wait()
        guarded.close_fd()
        return status

    assert anyio.run(main) == 143
    assert (tmp_path / "child.txt").read_text() == "TERM\n"


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(kind: str, tmp_path: Path) -> None:
    async def main() -> int:
        guarded, out = start(tmp_path, mode="stubborn", grace=0.3)
        child_pid(out)
        guarded.cut()
        with anyio.fail_after(10):
            status = await guarded.process.wait()
        guarded.close_fd()
        return status

    assert anyio.run(main) == 128 + signal.SIGKILL
    assert not (tmp_path / "child.txt").exists(), "the child saw an end of input"


def test_the_end_of_the_lifeline_without_commit_is_an_abort(kind: str, tmp_path: Path) -> None:
    """What dbstash's death looks like to the guardian: the lifeline ends, no ``commit`` came."""

    async def main() -> int:
        guarded, out = start(tmp_path)
        child_pid(out)
        assert guarded._lifeline is not None
        os.close(guarded._lifeline)  # the kernel does this when dbstash dies
        guarded._lifeline = None
        guarded.close_fd()  # and closes dbstash's write end: only the guardian's copy is left
        return await guarded.process.wait()

    assert anyio.run(main) == 143
    assert (tmp_path / "child.txt").read_text() == "TERM\n"


def test_sigkill_of_the_guardian_kills_the_child_before_it_sees_an_end(kind: str, tmp_path: Path) -> None:
    async def main() -> int:
        guarded, out = start(tmp_path)
        pid = child_pid(out)
        os.kill(guarded.process.pid, signal.SIGKILL)
        await guarded.process.wait()
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        assert not alive(pid), "the child outlived its guardian"
        guarded.close_fd()  # only now does the pipe lose its last writer
        return 0

    anyio.run(main)
    assert not (tmp_path / "child.txt").exists(), "the child saw an end of input"

"""The two storage transports as one test parameter: the rclone CLI (rcat) and the rc API (``rclone rcd``).

Shared tests take a :class:`Transport` and call :meth:`Transport.kwargs` for ``dbstash.backup()`` and
:meth:`Transport.storage` to look at the remote; the same test body then runs over both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any

from dbstash import RcloneCliStorage, RcloneOptions, RcloneRcStorage, RcOptions, Storage
from tests.support.servers import S3Server, free_port, wait_port

#: Throttle for tests that interrupt a backup mid-stream (no 16 MiB read-ahead: the dump stays busy).
SLOW_ARGS = ("--bwlimit", "4M", "--buffer-size", "0")


@dataclass
class RcDaemon:
    """``rclone rcd`` on loopback with basic auth, its config holding the test S3 remote."""

    port: int
    user: str
    password: str
    proc: subprocess.Popen[bytes]
    config_path: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def options(self, **kw: Any) -> RcOptions:
        return RcOptions(self.url, user=self.user, password=self.password, **kw)

    @classmethod
    def start(cls, rclone: str, config: str, extra: tuple[str, ...] = ()) -> RcDaemon:
        fd, path = tempfile.mkstemp(prefix="dbstash-rcd-", suffix=".conf")
        with os.fdopen(fd, "w") as fh:
            fh.write(config)
        port = free_port()
        password = "rc-pass-" + os.urandom(6).hex()
        proc = subprocess.Popen(
            [rclone, "rcd", "--rc-addr", f"127.0.0.1:{port}", *extra],
            # credentials by environment, so argv scans of the test machine never see them
            env={**os.environ, "RCLONE_CONFIG": path, "RCLONE_RC_USER": "dbstash", "RCLONE_RC_PASS": password},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(port)
        return cls(port, "dbstash", password, proc, path)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def destroy(self) -> None:
        self.stop()
        os.unlink(self.config_path)


@dataclass
class Transport:
    """One way of reaching the remote, with the test S3 remote configured."""

    name: str
    s3: S3Server
    rcd: RcDaemon | None = None
    rcd_slow: RcDaemon | None = field(default=None, repr=False)

    def kwargs(self, *, slow: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``dbstash.backup()`` selecting this transport."""
        if self.name == "cli":
            return {"rclone": RcloneOptions(config_text=self.s3.config, extra_args=SLOW_ARGS if slow else ())}
        daemon = self.rcd_slow if slow else self.rcd
        assert daemon is not None
        return {"rc": daemon.options()}

    def storage(self, remote: str) -> Storage:
        """A storage for looking at *remote* through this transport (use ``async with``)."""
        if self.name == "cli":
            return RcloneCliStorage(remote, RcloneOptions(config_text=self.s3.config))
        assert self.rcd is not None
        return RcloneRcStorage(remote, self.rcd.options())

    def __str__(self) -> str:
        return self.name

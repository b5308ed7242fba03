"""Throw-away servers for tests: PostgreSQL (Debian's or pgserver's binaries) and rclone serve s3.

Every server listens on 127.0.0.1 on a free port, keeps its data in a fresh temp dir and is stopped
by its fixture. PostgreSQL refuses to run as root, so it runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import sh


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def debian_pg_bindir() -> str | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return dirs[-1] if dirs else None


def pgserver_bindir() -> str | None:
    """PyPI's pgserver wheel ships PostgreSQL 16 binaries; copied where the postgres user can run them."""
    try:
        import pgserver
    except ImportError:
        return None
    site = os.path.dirname(os.path.dirname(pgserver.__file__))
    dst = "/tmp/dbstash-test-pgserver"
    if not os.path.isdir(dst):
        # keep the wheel's layout: the binaries' RPATH is $ORIGIN/../../../pgserver.libs
        tmp = tempfile.mkdtemp(prefix="dbstash-pgserver-", dir="/tmp")
        os.chmod(tmp, 0o755)
        shutil.copytree(os.path.join(site, "pgserver", "pginstall"), os.path.join(tmp, "pgserver", "pginstall"))
        shutil.copytree(os.path.join(site, "pgserver.libs"), os.path.join(tmp, "pgserver.libs"))
        try:
            os.rename(tmp, dst)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return os.path.join(dst, "pgserver", "pginstall", "bin")


def _as_postgres() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres"}


@dataclass
class PgServer:
    """A running PostgreSQL with a password-protected role ``app`` owning database ``app``."""

    bindir: str
    datadir: str
    port: int
    password: str = "s3cr3t-Pa55-word"
    user: str = "app"
    database: str = "app"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def logfile(self) -> str:
        return os.path.join(os.path.dirname(self.datadir), "server.log")

    def connections(self, user: str = "app") -> int:
        """How many connections of *user* the server has authorized so far (from its log)."""
        try:
            with open(self.logfile, errors="replace") as fh:
                return sum(1 for line in fh if "connection authorized" in line and f"user={user}" in line)
        except OSError:
            return 0

    @property
    def major(self) -> int:
        out = subprocess.run([os.path.join(self.bindir, "postgres"), "--version"], capture_output=True, text=True)
        return int(out.stdout.split()[2].split(".")[0])

    def uri(self, *, password: bool = True, database: str | None = None) -> str:
        auth = f"{self.user}:{self.password}" if password else self.user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database or self.database}"

    def env(self, database: str | None = None) -> dict[str, str]:
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": database or self.database,
        }

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run *sql* and return unaligned, tuples-only output."""
        psql = sh.Command(os.path.join(self.bindir, "psql"))
        out = psql("-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, _env=self.env(database), _timeout=120)
        return str(out).strip()

    def createdb(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    @classmethod
    def start(cls, bindir: str) -> PgServer:
        datadir = tempfile.mkdtemp(prefix="dbstash-pg-", dir="/tmp")
        os.chmod(datadir, 0o700)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(datadir, pw.pw_uid, pw.pw_gid)
        server = cls(bindir=bindir, datadir=os.path.join(datadir, "data"), port=free_port())
        pwfile = os.path.join(datadir, "pw")
        with open(pwfile, "w") as fh:
            fh.write("superuser-pw\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            [
                os.path.join(bindir, "initdb"),
                "-D",
                server.datadir,
                "-U",
                "postgres",
                "--pwfile",
                pwfile,
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            **_as_postgres(),  # type: ignore[call-overload]
        )
        # the server log records every connection: dry-run tests prove dbstash made none
        logfile = open(server.logfile, "ab")
        server.proc = subprocess.Popen(
            [
                os.path.join(bindir, "postgres"),
                "-D",
                server.datadir,
                "-p",
                str(server.port),
                "-k",
                datadir,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "log_connections=on",
            ],
            stdout=logfile,
            stderr=logfile,
            start_new_session=True,
            **_as_postgres(),  # type: ignore[call-overload]
        )
        logfile.close()
        wait_port(server.port)
        su_env = {
            **os.environ,
            "PGPASSWORD": "superuser-pw",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(server.port),
            "PGUSER": "postgres",
            "PGDATABASE": "postgres",
        }
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run(
                [
                    os.path.join(bindir, "psql"),
                    "-X",
                    "-c",
                    f"CREATE ROLE app LOGIN CREATEDB PASSWORD '{server.password}'",
                ],
                env=su_env,
                capture_output=True,
                text=True,
            )
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(r.stderr)
            time.sleep(0.1)
        subprocess.run(
            [os.path.join(bindir, "psql"), "-X", "-c", "CREATE DATABASE app OWNER app"],
            env=su_env,
            check=True,
            capture_output=True,
        )
        return server

    def superuser_psql(self, sql: str) -> None:
        env = {**self.env(), "PGUSER": "postgres", "PGPASSWORD": "superuser-pw", "PGDATABASE": "postgres"}
        subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-c", sql], env=env, check=True, capture_output=True)

    def stop(self, mode: str = "fast") -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        sig = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "smart": signal.SIGTERM}[mode]
        self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(os.path.dirname(self.datadir), ignore_errors=True)


@dataclass
class S3Server:
    """``rclone serve s3`` on loopback with one bucket; :attr:`config` is an rclone.conf for it."""

    root: str
    port: int
    proc: subprocess.Popen[bytes]
    access_key: str = "AKIDDBSTASHTEST"
    secret_key: str = "s3-secret-key-never-logged"
    bucket: str = "backups"
    remote_name: str = "s3test"

    @property
    def config(self) -> str:
        return (
            f"[{self.remote_name}]\ntype = s3\nprovider = Rclone\nendpoint = http://127.0.0.1:{self.port}\n"
            f"access_key_id = {self.access_key}\nsecret_access_key = {self.secret_key}\n"
        )

    def remote(self, folder: str) -> str:
        return f"{self.remote_name}:{self.bucket}/{folder}"

    def files(self, folder: str) -> list[str]:
        """Object names in *folder*, read from the server's own directory (not through S3).

        ``.rclone_temp_multipart_*`` files are the server's storage of an unfinished multipart upload,
        which S3 clients never see as an object (real S3 keeps those parts out of listings too).
        """
        path = os.path.join(self.root, self.bucket, folder)
        names = os.listdir(path) if os.path.isdir(path) else []
        return sorted(n for n in names if not n.startswith(".rclone_temp_multipart_"))

    @classmethod
    def start(cls, rclone: str, root: str) -> S3Server:
        os.makedirs(os.path.join(root, "backups"), exist_ok=True)
        port = free_port()
        proc = subprocess.Popen(
            # a short directory cache: tests seed objects by writing into a fresh folder directly, before
            # its first listing. Not 0s: with 0s the server spins a CPU forever once a cached directory
            # expires (measured: ~1 core for the rest of the session, which doubled the suite's time).
            [
                rclone,
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{port}",
                "--config",
                "/dev/null",
                "--dir-cache-time",
                "1s",
                root,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # the key goes by environment (CSV-quoted, as rclone reads list flags) so argv scans see only dbstash
            env={**os.environ, "RCLONE_AUTH_KEY": '"AKIDDBSTASHTEST,s3-secret-key-never-logged"'},
        )
        wait_port(port)
        return cls(root=root, port=port, proc=proc)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def kill_when(threshold: int, action: Callable[[], None]) -> Callable[[int], None]:
    """A progress callback that runs *action* once, when *threshold* bytes went through (mid-stream kills)."""
    fired = threading.Event()

    def progress(done: int) -> None:
        if done >= threshold and not fired.is_set():
            fired.set()
            action()

    return progress


def children_named(name: str, parent: int | None = None, arg: str | None = None) -> list[int]:
    """PIDs of processes called *name* (optionally descendants of *parent*, with *arg* in argv), from /proc.

    Descendants, not only children: on object stores rclone runs under dbstash's guardian.
    """
    procs: dict[int, tuple[str, int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as fh:
                text = fh.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        procs[int(stat.split("/")[2])] = (comm, int(text[text.rindex(")") + 2 :].split()[1]))

    def under(pid: int) -> bool:
        for _ in range(8):
            pid = procs.get(pid, ("", 0))[1]
            if pid == parent:
                return True
            if pid <= 1:
                return False
        return False

    pids = []
    for pid, (comm, _) in procs.items():
        if comm == name and (parent is None or under(pid)):
            if arg is not None:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                        if arg.encode() not in cmd.read().split(b"\0"):
                            continue
                except OSError:
                    continue
            pids.append(pid)
    return pids


def cmdline(pid: int) -> str:
    """The command line of *pid* (arguments joined by spaces; empty once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def uploads_of(parent: int) -> list[int]:
    """The rclone processes under *parent* uploading a backup: its manifest's ``rcat``, started in advance
    beside it (idle until the dump ends), is left out."""
    from dbstash.jobs.manifest import MANIFEST_SUFFIX

    return [p for p in children_named("rclone", parent, "rcat") if MANIFEST_SUFFIX not in cmdline(p)]


def all_cmdlines() -> Iterator[tuple[int, str]]:
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        yield int(path.split("/")[2]), raw.replace(b"\0", b" ").decode(errors="replace")


def _parents() -> dict[int, int]:
    found = {}
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path, "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[int(path.split("/")[2])] = int(fields[1])
    return found


def _descends(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    for _ in range(64):
        pid = parents.get(pid, 0)
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


class Blackhole:
    """A TCP server on loopback that accepts every connection and never answers: a hung peer.

    Connections are held open (and never read) until :meth:`close`, as a frozen S3, SFTP or WebDAV
    server would hold them.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        for conn in self.held:
            conn.close()


class ArgvScan:
    """Watches every process's argv while a block runs; collects any line holding a secret (and the
    programs it saw)."""

    def __init__(self, *secrets: str) -> None:
        self.secrets = [s for s in secrets if s]
        self.leaks: list[str] = []
        self.seen: set[str] = set()
        #: the programs seen among this process's descendants (other tests' processes left out)
        self.children: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            parents = _parents()
            for pid, cmd in all_cmdlines():
                program = cmd.split(" ", 1)[0].rsplit("/", 1)[-1]
                self.seen.add(program)
                if _descends(pid, os.getpid(), parents):
                    self.children.add(program)
                if any(s in cmd for s in self.secrets):
                    self.leaks.append(f"{pid}: {cmd}")
            time.sleep(0.02)

    def __enter__(self) -> ArgvScan:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

"""Shared fixtures: real servers on loopback, the real rclone binary, temp folders as remotes.

PostgreSQL comes from Debian's binaries started in a temp dir (the local path, complete on its own).
When ``DBSTASH_TEST_DOCKER=1`` and a Docker engine answers, the PostgreSQL fixture comes from
``tests/docker-compose.yml`` through pytest-docker instead; no Docker engine exists on the
project's own machines, so CI always takes the local path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cases import EngineCase, MariaDbCase, MongoCase, RedisCase
from tests.support.dbservers import FerretDbServer, MariaDbServer, RedisServer
from tests.support.receivers import HttpReceiver, SmtpReceiver
from tests.support.servers import PgServer, S3Server, debian_pg_bindir
from tests.support.transports import SLOW_ARGS, RcDaemon, Transport

VENV_BIN = os.path.dirname(sys.executable)
#: Where scripts/go-peers.sh puts the Go-built MongoDB peers (FerretDB, mongodump, mongorestore).
GO_BIN = Path(__file__).resolve().parent.parent / ".cache" / "go-bin"
RCLONE = shutil.which("rclone", path=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))


def _docker_wanted() -> bool:
    if os.environ.get("DBSTASH_TEST_DOCKER") != "1" or not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture(scope="session")
def rclone_bin() -> str:
    if RCLONE is None:
        pytest.fail("rclone is not installed: run the README's test command (it installs dbstash[test])")
    return RCLONE


@pytest.fixture(scope="session", autouse=True)
def _rclone_on_path() -> None:
    """dbstash looks up ``rclone`` on PATH: put the venv's (rclone-bin) first."""
    os.environ["PATH"] = os.pathsep.join([VENV_BIN, os.environ.get("PATH", ""), str(GO_BIN)])


@pytest.fixture(scope="session")
def pg_bindir() -> str:
    bindir = debian_pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries not found: run the README's test command (it installs them)")
    return bindir


@pytest.fixture(scope="session")
def pg(request: pytest.FixtureRequest, pg_bindir: str) -> Iterator[PgServer]:
    """A PostgreSQL server for the whole session (tests use their own tables or databases)."""
    if _docker_wanted():  # pragma: no cover - no Docker engine on the project's machines
        yield _pg_from_docker(request, pg_bindir)
        return
    server = PgServer.start(pg_bindir)
    yield server
    server.destroy()


@pytest.fixture(autouse=True)
def _drop_databases_the_test_made(request: pytest.FixtureRequest) -> Iterator[None]:
    """Drop the databases a test created on the session server (restore targets, drill copies).

    Every test backs up and restores the session server's databases; left in place, they add up to
    more than a small CI disk holds. Module-scoped fixtures are set up before this snapshot, so what
    they create lives on until they tear it down themselves.
    """
    if "pg" not in request.fixturenames:
        yield
        return
    server: PgServer = request.getfixturevalue("pg")
    listing = "SELECT datname FROM pg_database"
    before = set(server.psql(listing).splitlines())
    yield
    try:
        made = set(server.psql(listing).splitlines()) - before
    except Exception:  # the test stopped the server: nothing left to clean
        return
    for name in sorted(made):
        quoted = '"' + name.replace('"', '""') + '"'
        with contextlib.suppress(Exception):  # not ours to drop (another role's): leave it
            server.psql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")


def _pg_from_docker(request: pytest.FixtureRequest, pg_bindir: str) -> PgServer:  # pragma: no cover
    services = request.getfixturevalue("docker_services")
    port = services.port_for("postgres", 5432)
    from tests.support.servers import wait_port

    wait_port(port, 60)
    return PgServer(bindir=pg_bindir, datadir="", port=port)


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(Path(__file__).parent / "docker-compose.yml")


@pytest.fixture
def own_pg(pg_bindir: str) -> Iterator[PgServer]:
    """A PostgreSQL server of the test's own, for tests that stop it."""
    server = PgServer.start(pg_bindir)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def s3(rclone_bin: str) -> Iterator[S3Server]:
    root = tempfile.mkdtemp(prefix="dbstash-s3-")
    server = S3Server.start(rclone_bin, root)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    """A small SQLite database with two tables."""
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, note TEXT);
        CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), total REAL);
        """
    )
    con.executemany("INSERT INTO users(name, note) VALUES (?, ?)", [(f"user{i}", "é ' \" ;") for i in range(200)])
    con.executemany("INSERT INTO orders(user_id, total) VALUES (?, ?)", [(i % 200 + 1, i * 1.5) for i in range(500)])
    con.commit()
    con.close()
    return path


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a full disk on demand (root only: mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    path = tmp_path / "tiny"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def remote_dir(tmp_path: Path) -> Path:
    """A local folder used as the rclone remote."""
    return tmp_path / "remote"


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run the README's test command (it installs them)")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDbServer]:
    _need("mariadbd", "mariadb-install-db", "mariadb", "mariadb-dump", "mysqldump")
    server = MariaDbServer.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    _need("redis-server", "redis-cli")
    server = RedisServer.start()
    yield server
    server.destroy()


def mongo_peers() -> tuple[str, str]:
    """(ferretdb, mongodump) paths, or skip saying exactly why the Mongo integration tests cannot run."""
    ferretdb, mongodump, mongorestore = (shutil.which(t) for t in ("ferretdb", "mongodump", "mongorestore"))
    if ferretdb and mongodump and mongorestore:
        return ferretdb, mongodump
    why = GO_BIN / "BLOCKED"
    reason = why.read_text().strip() if why.is_file() else "scripts/go-peers.sh has not run"
    pytest.skip(f"BLOCKED: Mongo integration needs FerretDB + mongodump/mongorestore built with Go: {reason}")


@pytest.fixture(scope="session")
def ferretdb() -> Iterator[FerretDbServer]:
    binary, _ = mongo_peers()
    server = FerretDbServer.start(binary)
    yield server
    server.destroy()


ENGINE_KEYS = ["mysql", "mariadb", "redis", "mongo"]


def _case(key: str, request: pytest.FixtureRequest, own: bool) -> Iterator[EngineCase]:
    """An engine case on the shared server, or (*own*) on a server of its own that the test may kill."""
    case: EngineCase
    server: MariaDbServer | RedisServer | FerretDbServer | None = None
    if key in ("mysql", "mariadb"):
        _need("mariadbd")
        server = MariaDbServer.start() if own else request.getfixturevalue("mariadb")
        case = MariaDbCase(server, key)
    elif key == "redis":
        _need("redis-server")
        server = RedisServer.start() if own else request.getfixturevalue("redis")
        case = RedisCase(server)
    else:
        binary, _ = mongo_peers()
        server = FerretDbServer.start(binary) if own else request.getfixturevalue("ferretdb")
        case = MongoCase(server, binary)
    try:
        yield case
    finally:
        case.destroy()
        if own:
            server.destroy()


@pytest.fixture(params=ENGINE_KEYS)
def engine_case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    """Each engine in turn, on its session server, with data seeded."""
    for case in _case(request.param, request, own=False):
        case.seed()
        yield case


@pytest.fixture(params=ENGINE_KEYS)
def own_engine_case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    """Each engine in turn on a server of the test's own (it may be killed), with ~40 MB seeded."""
    for case in _case(request.param, request, own=True):
        case.seed()
        case.seed_big()
        yield case


@pytest.fixture(scope="session")
def rcd(rclone_bin: str, s3: S3Server) -> Iterator[RcDaemon]:
    """A shared ``rclone rcd`` (basic auth) whose config holds the test S3 remote."""
    daemon = RcDaemon.start(rclone_bin, s3.config)
    yield daemon
    daemon.destroy()


@pytest.fixture(scope="session")
def rcd_slow(rclone_bin: str, s3: S3Server) -> Iterator[RcDaemon]:
    """The same, throttled, for tests that interrupt an upload mid-stream."""
    daemon = RcDaemon.start(rclone_bin, s3.config, SLOW_ARGS)
    yield daemon
    daemon.destroy()


@pytest.fixture(params=["cli", "rc"])
def transport(request: pytest.FixtureRequest, s3: S3Server) -> Transport:
    """Each storage transport in turn: spawned rclone (rcat), then a running rclone rcd (rc API)."""
    if request.param == "cli":
        return Transport("cli", s3)
    return Transport("rc", s3, request.getfixturevalue("rcd"), request.getfixturevalue("rcd_slow"))


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    """A real HTTP receiver on loopback that records every request (webhooks, pings, apprise)."""
    r = HttpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """A real SMTP server on loopback (aiosmtpd) that keeps every message."""
    r = SmtpReceiver().start()
    yield r
    r.stop()

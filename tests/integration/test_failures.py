"""Every failure path ends the same way: exit as a failure, nothing under the final name.

The dump is slowed down with rclone's ``--bwlimit`` so that a process can be killed mid-stream;
the kill is triggered from the progress callback once some megabytes went through.
"""

from __future__ import annotations

import hashlib
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

import dbstash
from dbstash import BackupTimeout, DumpFailed, RcloneOptions, UploadFailed
from dbstash.jobs.manifest import manifest_name
from dbstash.jobs.naming import PARTIAL_MARK
from tests.support.servers import PgServer, S3Server, children_named, free_port, kill_when
from tests.support.transports import Transport

pytestmark = pytest.mark.integration
SLOW = ("--bwlimit", "4M")


@pytest.fixture(scope="module")
def big_table(pg: PgServer) -> Iterator[str]:
    """~45 MB of rows: the dump takes seconds at 4 MB/s, long enough to kill something mid-stream.
    Dropped after the module: every later test backs up this database (CI disks can be small)."""
    pg.psql(
        "CREATE TABLE IF NOT EXISTS big AS SELECT g AS id, repeat(md5(g::text), 9) AS pad "
        "FROM generate_series(1, 150000) g"
    )
    yield "big"
    pg.psql("DROP TABLE IF EXISTS big")


def kill_child(name: str, sig: int = signal.SIGKILL, arg: str | None = None) -> Callable[[], None]:
    def action() -> None:
        pids = children_named(name, os.getpid(), arg)
        assert pids, f"no {name} child to kill"
        for pid in pids:
            os.kill(pid, sig)

    return action


def remote_for(where: str, tmp_path: Path, s3: S3Server) -> tuple[str, Callable[[], list[str]]]:
    """A fresh remote folder (a local path, or a folder of the S3 server) and how to list it directly."""
    if where == "local":
        folder = tmp_path / "remote"
        return str(folder), lambda: sorted(os.listdir(folder)) if folder.exists() else []
    name = f"f-{uuid.uuid4().hex[:8]}"
    return s3.remote(name), lambda: s3.files(name)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_pg_dump_killed_mid_stream(
    pg: PgServer, big_table: str, tmp_path: Path, transport: Transport, where: str
) -> None:
    remote, files = remote_for(where, tmp_path, transport.s3)
    with pytest.raises(DumpFailed, match="pg_dump was killed by SIGKILL"):
        dbstash.backup(
            pg.uri(),
            remote=remote,
            progress=kill_when(3 << 20, kill_child("pg_dump")),
            **transport.kwargs(slow=True),
        )
    assert files() == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_rclone_killed_mid_stream(pg: PgServer, big_table: str, tmp_path: Path, s3: S3Server, where: str) -> None:
    remote, files = remote_for(where, tmp_path, s3)
    with pytest.raises(UploadFailed, match="rclone"):
        dbstash.backup(
            pg.uri(),
            remote=remote,
            rclone=RcloneOptions(config_text=s3.config, extra_args=SLOW),
            progress=kill_when(3 << 20, kill_child("rclone", arg="rcat")),
        )
    assert files() == []


def test_server_stopped_mid_dump(own_pg: PgServer, tmp_path: Path, transport: Transport) -> None:
    # ~150 MB (was ~45): a clean-clone CI run once saw the rc variant's dump complete although the
    # server was stopped at the first progress report (~9 MiB relayed, ~0.8 s in, when measured by
    # hand); the cause was not found in 20 local runs, loaded or not. More of a bigger dump is still
    # on the server when it stops.
    own_pg.psql("CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 9) AS pad FROM generate_series(1, 500000) g")
    remote = tmp_path / "remote"
    with pytest.raises(DumpFailed, match="pg_dump"):
        dbstash.backup(
            own_pg.uri(),
            remote=str(remote),
            progress=kill_when(3 << 20, lambda: own_pg.stop("immediate")),
            **transport.kwargs(slow=True),
        )
    assert not remote.exists() or os.listdir(remote) == []


def test_remote_unreachable(pg: PgServer, big_table: str) -> None:
    port = free_port()  # nothing listens there
    config = (
        f"[down]\ntype = s3\nprovider = Rclone\nendpoint = http://127.0.0.1:{port}\n"
        "access_key_id = AK\nsecret_access_key = unreachable-secret\n"
    )
    options = RcloneOptions(
        config_text=config, extra_args=("--low-level-retries", "1", "--retries", "1", "--contimeout", "2s")
    )
    with pytest.raises(UploadFailed) as info:
        dbstash.backup(pg.uri(), remote="down:bucket/x", rclone=options)
    assert "unreachable-secret" not in str(info.value)
    # what failed, on the message's first line (rclone's rc calls say "is a file not a directory")
    first = str(info.value).splitlines()[0]
    assert "connection refused" in first and "is a file" not in str(info.value), first


def test_timeout_aborts(pg: PgServer, big_table: str, tmp_path: Path, transport: Transport) -> None:
    remote = tmp_path / "remote"
    with pytest.raises(BackupTimeout):
        dbstash.backup(pg.uri(), remote=str(remote), timeout=2, **transport.kwargs(slow=True))
    assert not remote.exists() or os.listdir(remote) == []
    assert children_named("pg_dump", os.getpid()) == [] and children_named("rclone", os.getpid(), "rcat") == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_failed_run_never_touches_an_existing_backup_of_the_same_name(
    pg: PgServer, big_table: str, tmp_path: Path, transport: Transport, where: str
) -> None:
    remote, files = remote_for(where, tmp_path, transport.s3)
    good = dbstash.backup(pg.uri(), remote=remote, name_template="{db}-fixed", **transport.kwargs())
    with pytest.raises(DumpFailed):
        dbstash.backup(
            pg.uri(),
            remote=remote,
            name_template="{db}-fixed",
            progress=kill_when(3 << 20, kill_child("pg_dump")),
            **transport.kwargs(slow=True),
        )
    assert files() == [good.name, manifest_name(good.name)]

    async def read() -> bytes:
        async with transport.storage(remote) as storage:
            return await storage.read(good.name)

    assert hashlib.sha256(anyio.run(read)).hexdigest() == good.sha256


def test_partial_name_is_what_rclone_writes_while_streaming(
    pg: PgServer, big_table: str, tmp_path: Path, transport: Transport
) -> None:
    """During the upload the only object is the partial one, so a crash can only ever leave that."""
    remote = tmp_path / "remote"
    seen: list[list[str]] = []
    result = dbstash.backup(
        pg.uri(),
        remote=str(remote),
        progress=kill_when(3 << 20, lambda: seen.append(sorted(os.listdir(remote)))),
        **transport.kwargs(slow=True),
    )
    assert len(seen) == 1 and len(seen[0]) == 1
    assert seen[0][0].startswith(result.name) and seen[0][0].endswith(PARTIAL_MARK)
    assert sorted(os.listdir(remote)) == [result.name, manifest_name(result.name)]

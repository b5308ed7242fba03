"""PostgreSQL end to end against a real server: round trips, formats, tool versions, bad passwords."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import dbstash
from dbstash import DumpFailed
from dbstash.engines.base import DumpOptions
from dbstash.engines.postgres import PostgresEngine
from dbstash.jobs.manifest import manifest_name
from tests.support.servers import PgServer, pgserver_bindir
from tests.support.transports import Transport

pytestmark = pytest.mark.integration


def make_table(pg: PgServer, rows: int = 2000) -> str:
    table = f"t_{uuid.uuid4().hex[:8]}"
    pg.psql(
        f"CREATE TABLE {table}(id int primary key, name text, payload jsonb, at timestamptz default now());"
        f"INSERT INTO {table} SELECT g, 'name ' || g || E' \\' quote', jsonb_build_object('g', g)"
        f" FROM generate_series(1, {rows}) g;"
    )
    return table


def fetch(pg: PgServer, table: str, database: str | None = None) -> str:
    return pg.psql(f"SELECT id, name, payload FROM {table} ORDER BY id", database)


def restore(pg: PgServer, data: bytes, fmt: str) -> str:
    target = f"restore_{uuid.uuid4().hex[:8]}"
    pg.createdb(target)
    env = pg.env(target)
    if fmt == "plain":
        subprocess.run(
            [os.path.join(pg.bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"],
            input=data,
            env=env,
            check=True,
            capture_output=True,
        )
    else:
        subprocess.run(
            [os.path.join(pg.bindir, "pg_restore"), "--no-owner", "-d", target, "--exit-on-error"],
            input=data,
            env=env,
            check=True,
            capture_output=True,
        )
    return target


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "custom"])
@pytest.mark.parametrize("where", ["local", "s3"])
def test_round_trip(
    pg: PgServer, transport: Transport, tmp_path: Path, *, compress: bool, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    table = make_table(pg)
    remote = str(tmp_path / "remote") if where == "local" else transport.s3.remote(f"pg-{uuid.uuid4().hex[:6]}")
    caplog.set_level(logging.DEBUG, logger="dbstash")
    result = dbstash.backup(
        pg.uri(password=False), remote=remote, password=pg.password, compress=compress, **transport.kwargs()
    )
    assert result.name.endswith(".dump" if compress else ".sql")
    assert result.tool_version and "15" in result.tool_version
    # the rc transport's calls (the CLI transport's own `rclone rc --loopback` claim is a local process)
    used_rc = any(
        r.getMessage().startswith("rclone rc ") and "--loopback" not in r.getMessage() for r in caplog.records
    )
    assert used_rc == (transport.name == "rc")

    async def read() -> tuple[bytes, list[str]]:
        async with transport.storage(remote) as storage:
            return await storage.read(result.name), [e.name for e in await storage.list()]

    data, names = anyio.run(read)
    assert names == [result.name, manifest_name(result.name)]
    assert len(data) == result.size and hashlib.sha256(data).hexdigest() == result.sha256
    assert data.startswith(b"PGDMP") == compress
    target = restore(pg, data, "custom" if compress else "plain")
    assert fetch(pg, table, target) == fetch(pg, table)
    assert fetch(pg, table, target).count("\n") == 1999


def test_password_file(pg: PgServer, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(pg.password + "\n")
    make_table(pg, 10)
    result = dbstash.backup(pg.uri(password=False), remote=str(tmp_path / "r"), password_file=secret)
    assert (tmp_path / "r" / result.name).stat().st_size == result.size


def test_wrong_password_fails_and_uploads_nothing(pg: PgServer, tmp_path: Path) -> None:
    remote = tmp_path / "r"
    with pytest.raises(DumpFailed) as info:
        dbstash.backup(pg.uri(password=False), remote=str(remote), password="not-the-password")
    assert "password authentication failed" in str(info.value)
    assert "not-the-password" not in str(info.value)
    assert not remote.exists() or list(remote.iterdir()) == []


# -- choosing pg_dump among several installed majors ---------------------------------------------
@pytest.fixture(scope="module")
def pg16() -> Iterator[PgServer]:
    bindir = pgserver_bindir()
    if bindir is None:
        pytest.fail("pgserver (PostgreSQL 16 binaries from PyPI) is missing: install dbstash[test]")
    server = PgServer.start(bindir)
    yield server
    server.destroy()


def test_picks_the_matching_major(pg: PgServer, pg16: PgServer, pg_bindir: str) -> None:
    engine = PostgresEngine([pg_bindir, pg16.bindir], search_path=False)
    assert sorted(t.major for t in engine.installed_tools()) == [15, 16]
    for server, major in ((pg, 15), (pg16, 16)):
        conn = engine.parse_uri(server.uri())
        command = anyio.run(engine.dump_command, conn, DumpOptions())
        assert command.argv[0].startswith(server.bindir)
        assert command.tool_version and f"{major}." in command.tool_version


def test_newer_server_than_the_only_pg_dump_fails_naming_both_versions(pg16: PgServer, tmp_path: Path) -> None:
    """Debian 12 has only pg_dump 15 here. With one major there is nothing to choose and no probe:
    pg_dump's own refusal names both versions, and the run fails without leaving anything."""
    remote = tmp_path / "r"
    with pytest.raises(DumpFailed) as info:
        dbstash.backup(pg16.uri(), remote=str(remote))
    assert "server version: 16" in str(info.value) and "pg_dump version: 15" in str(info.value)
    assert not remote.exists() or list(remote.iterdir()) == []


def test_backup_of_a_16_server_uses_pg_dump_16(pg16: PgServer, tmp_path: Path, pg_bindir: str) -> None:
    """The whole pipeline with two majors on offer: the dump restores into the same server."""
    table = make_table(pg16, 50)
    engine = PostgresEngine([pg_bindir, pg16.bindir], search_path=False)
    conn = engine.parse_uri(pg16.uri())
    command = anyio.run(engine.dump_command, conn, DumpOptions())
    out = subprocess.run(command.argv, env={**os.environ, **command.env}, capture_output=True, check=True).stdout
    assert b"Dumped by pg_dump version 16" in out
    target = restore(pg16, out, "plain")
    assert fetch(pg16, table, target) == fetch(pg16, table)


def test_every_database_through_pg_dumpall(pg: PgServer, tmp_path: Path) -> None:
    """DB_NAME empty: pg_dumpall (roles and every database, plain SQL); the URI names no database."""
    table = make_table(pg, rows=50)
    pg.createdb(other := f"other_{uuid.uuid4().hex[:6]}")
    uri = f"postgresql://postgres:superuser-pw@127.0.0.1:{pg.port}/"
    result = dbstash.backup(uri, remote=str(tmp_path / "remote"), compress=True)
    assert result.name.startswith("all-") and result.name.endswith(".sql")  # pg_dumpall has no custom format
    assert result.tool_version and "pg_dump" in result.tool_version
    text = (tmp_path / "remote" / result.name).read_text()
    assert "PostgreSQL database cluster dump" in text
    assert f"CREATE DATABASE {other}" in text and f"CREATE TABLE public.{table}" in text
    assert "CREATE ROLE app" in text

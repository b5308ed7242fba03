"""Restore-side safety (issue 25): drills that touch only what they may, names passed as data, one odd
name failing its own line, manifests that must belong to the job, same-second ordering.

Every test here failed on the main before the fix it names, against the suite's real servers."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import dbstash
from dbstash import RestoreRefused, Settings
from tests.support.dbservers import MariaDbServer
from tests.support.servers import PgServer

pytestmark = pytest.mark.integration


def _pg_db_with_table(pg: PgServer) -> tuple[str, str]:
    name, table = f"live_{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:6]}"
    pg.createdb(name)
    pg.psql(f"CREATE TABLE {table}(id int); INSERT INTO {table} SELECT generate_series(1, 10)", name)
    return name, table


# -- 1. a drill never erases a target it did not prove empty -----------------------------------------
def test_pg_verify_into_a_database_holding_data_refuses_and_keeps_it(pg: PgServer, tmp_path: Path) -> None:
    settings = Settings.create(pg.uri(), remote=str(tmp_path / "remote"))
    dbstash.backup(settings=settings)
    live, table = _pg_db_with_table(pg)
    with pytest.raises(RestoreRefused, match=r"not empty.*nothing was touched"):
        dbstash.verify(settings, target=pg.uri(database=live))
    assert pg.psql(f"SELECT count(*) FROM {table}", live) == "10", "the refused target keeps its data"


def test_pg_verify_that_fails_midway_clears_only_the_scratch_it_proved_empty(pg: PgServer, tmp_path: Path) -> None:
    settings = Settings.create(pg.uri(), remote=str(tmp_path / "remote"))
    backup = dbstash.backup(settings=settings)
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    pg.createdb(scratch)
    data = bytearray((tmp_path / "remote" / backup.name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "remote" / backup.name).write_bytes(bytes(data))
    with pytest.raises(dbstash.ChecksumMismatch):
        dbstash.verify(settings, target=pg.uri(database=scratch))
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", scratch) == "0"


def test_mariadb_verify_into_a_database_holding_data_refuses_and_keeps_it(
    mariadb: MariaDbServer, tmp_path: Path
) -> None:
    settings = Settings.create(mariadb.uri(scheme="mariadb"), remote=str(tmp_path / "remote"))
    dbstash.backup(settings=settings)
    live = f"live_{uuid.uuid4().hex[:8]}"
    mariadb.sql(f"CREATE DATABASE {live}; CREATE TABLE {live}.keep (id int); INSERT INTO {live}.keep VALUES (1), (2)")
    mariadb.sql(f"GRANT ALL ON {live}.* TO 'app'@'%'")
    with pytest.raises(RestoreRefused, match="not empty"):
        dbstash.verify(settings, target=mariadb.uri(scheme="mariadb", database=live))
    assert mariadb.sql(f"SELECT count(*) FROM {live}.keep") == "2", "the refused target keeps its data"

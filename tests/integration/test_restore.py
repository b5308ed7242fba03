"""Restore, list and verify against real servers: every engine round-trips through ``dbstash.restore``;
corrupted and truncated backups fail with a checksum error before the tool sees the end of its input."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import pytest

import dbstash
from dbstash import ChecksumMismatch, RestoreError, RestoreRefused, Settings
from dbstash.jobs.manifest import Manifest, manifest_name
from dbstash.jobs.naming import partial_name
from tests.support.cases import EngineCase
from tests.support.servers import PgServer
from tests.support.transports import Transport

pytestmark = pytest.mark.integration


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flipped":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) // 2 :]
    path.write_bytes(bytes(data))


# -- every engine ----------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", ["false", "zstd"])
def test_restore_round_trip(engine_case: EngineCase, tmp_path: Path, compress: str) -> None:
    settings = Settings.create(engine_case.uri(), remote=str(tmp_path / "remote"), compress=compress)
    before = engine_case.snapshot()
    backup = dbstash.backup(settings=settings)
    target = engine_case.fresh_target(str(tmp_path))
    result = dbstash.restore(settings, target=target)
    assert result.name == backup.name and result.sha256 == backup.sha256 and result.checksum_verified
    assert engine_case.password not in result.target
    assert engine_case.target_snapshot(target) == before


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_damaged_backup_fails_restore_and_verify(engine_case: EngineCase, tmp_path: Path, how: str) -> None:
    remote = tmp_path / "remote"
    settings = Settings.create(engine_case.uri(), remote=str(remote))
    backup = dbstash.backup(settings=settings)
    damage(remote / backup.name, how)
    target = engine_case.fresh_target(str(tmp_path))
    with pytest.raises(ChecksumMismatch, match="truncated" if how == "truncated" else "corrupted") as info:
        dbstash.restore(settings, target=target)
    if engine_case.key in ("mysql", "mariadb", "mongo"):  # not one transaction: proven before the tool starts
        assert "Nothing was applied: the bytes were checked before the restore tool started" in str(info.value)
    else:
        assert "restore was stopped" in str(info.value)
    if engine_case.key == "redis":
        assert not os.path.exists(target), "the RDB goes to a temp file, removed on a mismatch"
    with pytest.raises(ChecksumMismatch):
        dbstash.verify(settings, target=engine_case.fresh_target(str(tmp_path)))


# -- PostgreSQL ----------------------------------------------------------------------------------------
def _pg_settings(pg: PgServer, remote: Path, **kw: object) -> Settings:
    return Settings.create(pg.uri(), remote=str(remote), **kw)  # type: ignore[arg-type]


def _pg_table(pg: PgServer) -> str:
    table = f"r_{uuid.uuid4().hex[:8]}"
    pg.psql(
        f"CREATE TABLE {table}(id int primary key, v text);"
        f"INSERT INTO {table} SELECT g, md5(g::text) FROM generate_series(1, 3000) g"
    )
    return table


def _fresh_db(pg: PgServer) -> str:
    name = f"restore_{uuid.uuid4().hex[:8]}"
    pg.createdb(name)
    return name


@pytest.mark.parametrize("compress", [False, True, "gzip"], ids=["plain", "custom", "gzip"])
def test_pg_restore_round_trip(pg: PgServer, tmp_path: Path, compress: bool | str) -> None:
    table = _pg_table(pg)
    settings = _pg_settings(pg, tmp_path / "remote", compress=compress)
    dbstash.backup(settings=settings)
    target = _fresh_db(pg)
    result = dbstash.restore(settings, target=pg.uri(database=target))
    assert result.tool == ("pg_restore" if compress is True else "psql")
    assert pg.psql(f"SELECT count(*), sum(id) FROM {table}", target) == pg.psql(
        f"SELECT count(*), sum(id) FROM {table}"
    )


@pytest.mark.parametrize("how", ["flipped", "truncated"])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "custom"])
def test_pg_damaged_backup_applies_nothing(pg: PgServer, tmp_path: Path, compress: bool, how: str) -> None:
    """psql/pg_restore run in one transaction and never see end of input: a mismatch rolls everything back."""
    _pg_table(pg)
    remote = tmp_path / "remote"
    settings = _pg_settings(pg, remote, compress=compress)
    backup = dbstash.backup(settings=settings)
    damage(remote / backup.name, how)
    target = _fresh_db(pg)
    with pytest.raises(ChecksumMismatch, match="rolled back: nothing was applied"):
        dbstash.restore(settings, target=pg.uri(database=target))
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", target) == "0"


def test_pg_restore_into_a_non_empty_database_needs_force(pg: PgServer, tmp_path: Path) -> None:
    table = _pg_table(pg)
    settings = _pg_settings(pg, tmp_path / "remote", compress=True)
    dbstash.backup(settings=settings)
    target = _fresh_db(pg)
    pg.psql("CREATE TABLE keep_me(x int); INSERT INTO keep_me VALUES (1)", target)
    with pytest.raises(RestoreRefused, match="not empty"):
        dbstash.restore(settings, target=pg.uri(database=target))
    assert pg.psql(f"SELECT count(*) FROM pg_tables WHERE tablename = '{table}'", target) == "0"
    dbstash.restore(settings, target=pg.uri(database=target), force=True)
    assert pg.psql(f"SELECT count(*) FROM {table}", target) == "3000"


def test_pg_verify_counts_rows_and_drops_the_scratch_data(pg: PgServer, tmp_path: Path) -> None:
    table = _pg_table(pg)
    settings = _pg_settings(pg, tmp_path / "remote")
    dbstash.backup(settings=settings)
    scratch = _fresh_db(pg)
    result = dbstash.verify(settings, target=pg.uri(database=scratch))
    assert result.counts[f"public.{table}"] == 3000 and result.restore.checksum_verified
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", scratch) == "0"


# -- listing, selection, manifests ---------------------------------------------------------------------
def test_list_pairs_manifests_and_shows_partials_and_legacy_backups(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote))
    uri = f"sqlite:///{sqlite_db}"
    first = dbstash.backup(uri, remote=str(remote), name_template="{db}-2026-01-01-000000")
    second = dbstash.backup(uri, remote=str(remote), name_template="{db}-2026-01-02-000000")
    assert first.name != second.name
    # a backup from before manifests existed, and a killed run's leftover
    (remote / "app-2025-12-31-000000.sql").write_bytes((remote / first.name).read_bytes())
    (remote / partial_name("app-2026-01-03-000000.sql", "deadbeef")).write_text("half a dump")
    infos = dbstash.list_backups(settings)
    assert [i.name for i in infos] == [
        partial_name("app-2026-01-03-000000.sql", "deadbeef"),
        second.name,
        first.name,
        "app-2025-12-31-000000.sql",
    ]
    partial, newest, _, legacy = infos
    assert not partial.complete and newest.complete and legacy.complete
    assert newest.manifest is not None and newest.manifest.sha256 == second.sha256 and newest.size_ok
    assert legacy.manifest is None and legacy.manifest_problem == "no manifest"
    manifest = Manifest.from_json((remote / manifest_name(first.name)).read_bytes())
    assert (manifest.size, manifest.sha256, manifest.engine, manifest.mode) == (
        first.size,
        first.sha256,
        "sqlite",
        "stream",
    )
    # selection: latest skips the partial; a time picks the newest at or before it; legacy restores unchecked
    out = tmp_path / "latest.db"
    assert dbstash.restore(settings, target=str(out)).name == second.name
    picked = dbstash.restore(settings, "2026-01-01T12:00", target=str(tmp_path / "by-time.db"))
    assert picked.name == first.name
    with pytest.raises(RestoreRefused, match="allow_unverified=True"):  # nothing proves a legacy backup complete
        dbstash.restore(settings, "app-2025-12-31-000000.sql", target=str(tmp_path / "legacy.db"))
    assert not (tmp_path / "legacy.db").exists()
    old = dbstash.restore(
        settings, "app-2025-12-31-000000.sql", target=str(tmp_path / "legacy.db"), allow_unverified=True
    )
    assert not old.checksum_verified
    con = sqlite3.connect(tmp_path / "legacy.db")
    assert con.execute("SELECT count(*) FROM users").fetchone() == (200,)
    con.close()
    with pytest.raises(dbstash.ConfigError, match="partial"):
        dbstash.restore(settings, partial.name, target=str(tmp_path / "p.db"))


def test_retention_removes_a_backup_with_its_manifest(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote), retention_max_files=1)
    a = dbstash.backup(f"sqlite:///{sqlite_db}", remote=str(remote), name_template="{db}-2026-01-01-000000")
    b = dbstash.backup(settings=settings)
    assert a.name in b.deleted
    assert sorted(os.listdir(remote)) == [b.name, manifest_name(b.name)]


def test_sqlite_restore_over_rc_and_cli(sqlite_db: Path, tmp_path: Path, transport: Transport) -> None:
    remote = transport.s3.remote(f"restore-{uuid.uuid4().hex[:6]}")
    kwargs = transport.kwargs()
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=remote, compress="zstd", **kwargs)
    dbstash.backup(settings=settings)
    out = tmp_path / "restored.db"
    result = dbstash.restore(settings, target=str(out))
    assert result.checksum_verified
    con = sqlite3.connect(out)
    assert con.execute("SELECT count(*) FROM orders").fetchone() == (500,)
    con.close()


def test_async_twins(sqlite_db: Path, tmp_path: Path) -> None:
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(tmp_path / "remote"))

    async def go() -> tuple[int, dict[str, int]]:
        await dbstash.abackup(settings=settings)
        infos = await dbstash.alist_backups(settings)
        verified = await dbstash.averify(settings)
        return len(infos), verified.counts

    n, counts = anyio.run(go)
    assert n == 1 and counts == {"orders": 500, "users": 200}


# -- the entrypoint --------------------------------------------------------------------------------
def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
    return subprocess.run(
        [sys.executable, "-m", "dbstash_cli", *args], env=full, capture_output=True, text=True, timeout=300
    )


def test_verify_through_the_entrypoint_with_env_vars(pg: PgServer, tmp_path: Path) -> None:
    table = _pg_table(pg)
    scratch = _fresh_db(pg)
    remote = tmp_path / "remote"
    env = {
        "DB_URI": pg.uri(),
        "RCLONE_REMOTE": str(remote),
        "VERIFY_TARGET_URI": pg.uri(database=scratch),
        "BACKUP_SCHEDULE": "once",
    }
    assert _cli(["run"], env).returncode == 0
    ok = _cli(["verify", "--json"], env)
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["ok"] and out["checksum_verified"] and out["counts"][f"public.{table}"] == 3000
    assert pg.password not in ok.stdout + ok.stderr
    listed = json.loads(_cli(["list", "--json"], env).stdout)
    assert listed["backups"][0]["sha256"] == out["sha256"]
    (name,) = [n for n in os.listdir(remote) if n.endswith(".sql")]
    damage(remote / name, "flipped")
    bad = _cli(["verify", "--json"], env)
    assert bad.returncode == 1 and json.loads(bad.stdout)["error_type"] == "ChecksumMismatch"
    refused = _cli(["restore", "--target", pg.uri(), "--json"], env)  # the live database holds data
    assert refused.returncode == 2 and "not empty" in refused.stdout


def test_restore_error_when_the_backup_cannot_be_read(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote), compress="gzip")
    backup = dbstash.backup(settings=settings)
    (remote / manifest_name(backup.name)).unlink()  # no manifest: the decompressor is the last line of defence
    damage(remote / backup.name, "truncated")
    with pytest.raises(RestoreError, match=r"cannot be decompressed|sqlite3"):
        dbstash.restore(settings, target=str(tmp_path / "x.db"), allow_unverified=True)
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_sqlite_damaged_backup_leaves_no_file(sqlite_db: Path, tmp_path: Path, how: str) -> None:
    remote = tmp_path / "remote"
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote), compress="zstd")
    backup = dbstash.backup(settings=settings)
    damage(remote / backup.name, how)
    out = tmp_path / "restored.db"
    with pytest.raises(ChecksumMismatch, match="nothing was kept"):
        dbstash.restore(settings, target=str(out))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "dbstash-partial" in p.name]
    with pytest.raises(ChecksumMismatch):
        dbstash.verify(settings)

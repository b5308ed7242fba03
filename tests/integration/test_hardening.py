"""Issue 14, the red-team pass: each test here failed on 0.2.0 and pins the fix.

Real servers and the real rclone binary throughout; the numbers of the comments are the issue's items.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import dbstash
from dbstash import ChecksumMismatch, RestoreError, RestoreRefused, Settings, UploadFailed
from dbstash._version import __version__
from dbstash.jobs.manifest import MANIFEST_SUFFIX, Manifest, manifest_name
from dbstash.jobs.naming import NameTemplate, partial_name
from tests.support.cases import MariaDbCase
from tests.support.dbservers import MariaDbServer
from tests.support.servers import PgServer

pytestmark = pytest.mark.integration


def _manifest(name: str, data: bytes, *, engine: str, database: str) -> bytes:
    return Manifest(
        name=name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        engine=engine,
        database=database,
        mode="stream",
        compression=None,
        native_compression=False,
        tool_version=None,
        dbstash_version=__version__,
        started_at="2026-01-01T02:00:00+00:00",
        finished_at="2026-01-01T02:00:01+00:00",
    ).to_json()


def _names_around_now(settings: Settings, seconds: int = 8) -> list[str]:
    """Every name the job's template gives for the next few seconds (and the one before)."""
    template = settings.template()
    now = datetime.now(settings.zone)
    return sorted({template.render(now + timedelta(seconds=d)) for d in range(-1, seconds)})


def _pairs_are_consistent(remote: Path) -> list[str]:
    """Every data file has its manifest, and the manifest describes exactly those bytes. Returns the data files."""
    names = sorted(os.listdir(remote))
    data = [n for n in names if not n.endswith(MANIFEST_SUFFIX)]
    for n in data:
        m = Manifest.from_json((remote / manifest_name(n)).read_bytes())
        body = (remote / n).read_bytes()
        assert m.name == n and m.size == len(body) and m.sha256 == hashlib.sha256(body).hexdigest(), n
    assert len(names) == 2 * len(data), names
    return data


# -- 1. a run never replaces what it did not create ---------------------------------------------------
@pytest.mark.parametrize("claim", ["backup", "partial"])
def test_a_taken_name_gets_the_run_id_and_the_other_backup_is_untouched(
    sqlite_db: Path, tmp_path: Path, claim: str
) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote))
    planted = {}
    for name in _names_around_now(settings):
        if claim == "backup":  # another run of this job committed in this second
            body = b"-- another run's backup\n" + name.encode()
            (remote / name).write_bytes(body)
            (remote / manifest_name(name)).write_bytes(_manifest(name, body, engine="sqlite", database="app"))
            planted[name] = body
        else:  # another run of this job is uploading under this name right now
            (remote / partial_name(name, "0badc0de")).write_bytes(b"in flight")
    result = dbstash.backup(settings=settings)
    stem, ext = result.name.rsplit(".", 1)
    # the sortable suffix: the run's microseconds, then two characters of its id (same-second order, issue 25)
    assert stem[-9] == "-" and stem[-8:-2].isdigit() and stem.endswith(result.backup_id[:2]) and ext == "sql"
    assert settings.template().matches(result.name), "listing, retention and restore must see it"
    for name, body in planted.items():
        assert (remote / name).read_bytes() == body, "the other run's backup was replaced"
    m = Manifest.from_json((remote / manifest_name(result.name)).read_bytes())
    assert m.name == result.name and m.sha256 == result.sha256
    assert dbstash.restore(settings, result.name, target=str(tmp_path / "back.db")).checksum_verified


# -- 2. non-transactional restores prove the bytes first ----------------------------------------------
@pytest.mark.parametrize("key", ["mysql", "mariadb"])
@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_tampered_mysql_backup_leaves_a_live_target_untouched(
    mariadb: MariaDbServer, tmp_path: Path, key: str, how: str
) -> None:
    case = MariaDbCase(mariadb, key)  # MySQL/MariaDB restores are not one transaction
    case.seed()
    case.seed_big()  # ~9 MB: the tool would have applied tables before reaching the damage
    remote = tmp_path / "remote"
    settings = Settings.create(case.uri(), remote=str(remote))
    backup = dbstash.backup(settings=settings)
    data = bytearray((remote / backup.name).read_bytes())
    if how == "flipped":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) // 2 :]
    (remote / backup.name).write_bytes(bytes(data))
    target = case.fresh_target(str(tmp_path))
    db = target.rsplit("/", 1)[1]
    mariadb.sql("CREATE TABLE customers(id INT PRIMARY KEY, name TEXT); INSERT INTO customers VALUES (7, 'kept')", db)
    before = case.target_snapshot(target)
    with pytest.raises(ChecksumMismatch, match="Nothing was applied"):
        dbstash.restore(settings, target=target, force=True)
    assert case.target_snapshot(target) == before


# -- 3. retention only deletes this job's backups ------------------------------------------------------
def test_retention_leaves_backups_whose_manifest_names_another_job(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    foreign = "app-2026-01-01-020000.sql"  # same name shape, but another engine's and database's backup
    own_old = "app-2026-01-02-020000.sql"
    legacy = "app-2026-01-03-020000.sql"  # made before manifests existed: the name is all there is
    for name, engine, database in ((foreign, "mariadb", "other"), (own_old, "sqlite", "app")):
        body = f"-- {engine} {database}\n".encode()
        (remote / name).write_bytes(body)
        (remote / manifest_name(name)).write_bytes(_manifest(name, body, engine=engine, database=database))
    (remote / legacy).write_bytes(b"-- legacy\n")
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote), retention_max_files=1)
    result = dbstash.backup(settings=settings)
    assert sorted(result.deleted) == [own_old, legacy]
    left = sorted(os.listdir(remote))
    assert left == sorted([foreign, manifest_name(foreign), result.name, manifest_name(result.name)])
    # prune plans the same way: the foreign backup is not even a candidate
    plan = dbstash.prune(settings, dry_run=True).plan
    assert [d.backup.name for d in plan.decisions] == [result.name]


# -- 4. no manifest, no backup -------------------------------------------------------------------------
def test_a_manifest_that_cannot_be_stored_fails_the_run_and_publishes_nothing(
    sqlite_db: Path, tmp_path: Path, tiny_fs: Path
) -> None:
    probe = dbstash.backup(f"sqlite:///{sqlite_db}", remote=str(tmp_path / "probe"))
    pages = -(-probe.size // 4096)
    # leave room for exactly the backup's bytes: its manifest finds the disk full
    st = os.statvfs(tiny_fs)
    (tiny_fs / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - pages * 4096))
    with pytest.raises(UploadFailed, match="manifest") as info:
        dbstash.backup(f"sqlite:///{sqlite_db}", remote=str(tiny_fs))
    assert "not committed" in str(info.value)
    assert sorted(os.listdir(tiny_fs)) == ["filler"], "neither the backup nor a broken manifest may remain"


def test_restoring_a_backup_without_a_manifest_needs_an_explicit_flag(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote))
    backup = dbstash.backup(settings=settings)
    (remote / manifest_name(backup.name)).write_bytes(b"")  # what a full disk used to leave
    with pytest.raises(RestoreRefused, match="allow_unverified=True"):
        dbstash.restore(settings, target=str(tmp_path / "a.db"))
    assert not (tmp_path / "a.db").exists()
    result = dbstash.restore(settings, target=str(tmp_path / "b.db"), allow_unverified=True)
    assert not result.checksum_verified and (tmp_path / "b.db").stat().st_size > 0


# -- 7. backups on a local remote are private ----------------------------------------------------------
def test_local_backups_are_readable_by_their_owner_only(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "a" / "b"
    result = dbstash.backup(f"sqlite:///{sqlite_db}", remote=str(remote))
    for path in (remote / result.name, remote / manifest_name(result.name)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (tmp_path / "a", remote):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


# -- 9. leftovers of aborted runs are removed later ----------------------------------------------------
def test_stale_partials_of_this_job_are_removed_by_the_next_run_and_by_prune(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote), retention_max_files=5)
    template: NameTemplate = settings.template()
    two_days = time.time() - 2 * 86400
    old_own = partial_name(template.render(datetime(2026, 1, 1, tzinfo=UTC)), "11111111")
    old_own_2 = partial_name(template.render(datetime(2026, 1, 2, tzinfo=UTC)), "22222222")
    fresh_own = partial_name(template.render(datetime.now(UTC)), "33333333")  # a run uploading right now
    old_foreign = partial_name("other-2026-01-01-020000.sql", "44444444")
    for name in (old_own, old_own_2, fresh_own, old_foreign):
        (remote / name).write_bytes(b"partial")
    for name in (old_own, old_own_2, old_foreign):
        os.utime(remote / name, (two_days, two_days))
    dbstash.backup(settings=settings)
    left = set(os.listdir(remote))
    assert old_own not in left and old_own_2 not in left
    assert {fresh_own, old_foreign} <= left
    os.utime(remote / fresh_own, (two_days, two_days))
    dbstash.prune(settings)
    assert fresh_own not in os.listdir(remote) and old_foreign in os.listdir(remote)


# -- 12. messages and leftovers ------------------------------------------------------------------------
def test_a_truncated_sqlite_restore_leaves_no_journal_behind(tmp_path: Path) -> None:
    db = tmp_path / "big.db"  # ~3 MB of dump: sqlite3 is writing (with its journal) when the mismatch stops it
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad TEXT)")
    con.executemany("INSERT INTO t(pad) VALUES (?)", [("x" * 100,) for _ in range(30000)])
    con.commit()
    con.close()
    remote = tmp_path / "remote"
    settings = Settings.create(f"sqlite:///{db}", remote=str(remote))
    backup = dbstash.backup(settings=settings)
    data = (remote / backup.name).read_bytes()
    (remote / backup.name).write_bytes(data[: len(data) // 2])
    out = tmp_path / "restored"
    out.mkdir()
    with pytest.raises(ChecksumMismatch):
        dbstash.restore(settings, target=str(out / "x.db"))
    assert os.listdir(out) == []


def test_a_failing_psql_during_restore_is_a_restore_error(pg: PgServer, tmp_path: Path) -> None:
    pg.psql("CREATE TABLE IF NOT EXISTS hard_r(id int)")
    settings = Settings.create(pg.uri(), remote=str(tmp_path / "remote"))
    dbstash.backup(settings=settings)
    missing = pg.uri(database="no_such_database_here")
    with pytest.raises(RestoreError) as info:
        dbstash.restore(settings, target=missing)
    assert type(info.value).__name__ == "RestoreError", "psql failing in a restore is no DumpFailed"
    assert pg.password not in str(info.value)


def test_manifest_json_is_what_list_reads(sqlite_db: Path, tmp_path: Path) -> None:
    """The batch manifest read (one rclone cat for all) gives retention the same manifests list reads one by one."""
    remote = tmp_path / "remote"
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote))
    names = [dbstash.backup(settings=settings).name for _ in range(3)]
    import anyio

    from dbstash.storage.rclone_cli import RcloneCliStorage

    async def read() -> dict[str, bytes]:
        async with RcloneCliStorage(str(remote)) as store:
            return await store.read_many([manifest_name(n) for n in names] + ["missing" + MANIFEST_SUFFIX])

    got = anyio.run(read)
    assert sorted(got) == sorted(manifest_name(n) for n in names)
    for n in names:
        assert json.loads(got[manifest_name(n)]) == json.loads((remote / manifest_name(n)).read_bytes())

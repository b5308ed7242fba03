"""MongoDB for real (issue 16): FerretDB v1 with real authentication and the real mongodump/mongorestore,
built from the shared mongo-tools source. Each test failed before the fix it is named after.

What FerretDB cannot show (a real MongoDB would): see docs/engines/mongo.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dbstash
from dbstash import ChecksumMismatch, RestoreError, RestoreRefused, Settings
from tests.support.cases import MongoCase
from tests.support.dbservers import FerretDbServer

pytestmark = pytest.mark.integration
DBSTASH = [sys.executable, "-m", "dbstash_cli"]


@pytest.fixture
def case(ferretdb: FerretDbServer) -> Iterator[MongoCase]:
    from tests.conftest import mongo_peers

    binary, _ = mongo_peers()
    c = MongoCase(ferretdb, binary)
    c.seed()
    yield c
    c.destroy()


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LOG_FORMAT": "text", **env}
    return subprocess.run(DBSTASH + args, env=full, capture_output=True, text=True, timeout=300)


# -- 1. multi-file backups with the tool's own gzip restore everything --------------------------------------
@pytest.mark.parametrize(
    ("mode", "compress"),
    [("directory", "false"), ("directory", "true"), ("tar", "false"), ("tar", "true"), ("tar", "zstd")],
)
def test_directory_and_tar_round_trips_with_every_compression(
    case: MongoCase, tmp_path: Path, mode: str, compress: str
) -> None:
    settings = Settings.create(
        case.uri(), remote=str(tmp_path / "remote"), mode=mode, temp_dir=str(tmp_path / "work"), compress=compress
    )
    dbstash.backup(settings=settings)
    target = case.fresh_target(str(tmp_path))
    result = dbstash.restore(settings, target=target)
    assert result.checksum_verified
    assert case.target_snapshot(target) == case.snapshot(), "every document restored (not an empty database)"


def test_a_restore_that_applies_nothing_is_a_failure(case: MongoCase, tmp_path: Path) -> None:
    case.seed_big()  # a backup that surely holds data
    settings = Settings.create(
        case.uri(), remote=str(tmp_path / "remote"), restore_extra_args=["--nsExclude=*"]
    )  # mongorestore then skips every collection and exits 0
    dbstash.backup(settings=settings)
    with pytest.raises(RestoreError, match="empty after the restore"):
        dbstash.restore(settings, target=case.fresh_target(str(tmp_path)))


# -- 2. verify proves something, and a non-empty target needs --force ----------------------------------------
def test_verify_counts_documents_and_drops_its_scratch_database(case: MongoCase, tmp_path: Path) -> None:
    settings = Settings.create(case.uri(), remote=str(tmp_path / "remote"))
    dbstash.backup(settings=settings)
    scratch = case.fresh_target(str(tmp_path))
    result = dbstash.verify(settings, target=scratch)
    assert result.counts == {f"{case.database}.customers": 300, f"{case.database}.orders": 1000}
    assert case.target_snapshot(scratch) == {}, "the scratch database was dropped"


def test_restore_into_a_non_empty_target_needs_force(case: MongoCase, tmp_path: Path) -> None:
    settings = Settings.create(case.uri(), remote=str(tmp_path / "remote"))
    dbstash.backup(settings=settings)
    with pytest.raises(RestoreRefused, match="not empty"):
        dbstash.restore(settings)  # into the job's own database, which holds the data
    assert dbstash.restore(settings, force=True).checksum_verified
    assert case.snapshot()["customers"]  # still there: --drop then restored


# -- 3. a URI without a user works from the entrypoint ----------------------------------------------------
def test_a_uri_without_credentials_works_through_the_entrypoint(tmp_path: Path) -> None:
    from tests.conftest import mongo_peers

    binary, _ = mongo_peers()
    server = FerretDbServer.start(binary, auth=False)
    c = MongoCase(server, binary)
    try:
        c.seed()
        proc = _run(
            ["run"], {"DB_URI": server.uri(c.database), "RCLONE_REMOTE": str(tmp_path / "r"), "BACKUP_SCHEDULE": "once"}
        )
        assert proc.returncode == 0, proc.stderr
        assert "authSource" not in proc.stderr
    finally:
        c.destroy()
        server.destroy()


# -- 4. a --target URI logs in where the job does (DB_AUTH_SOURCE) ------------------------------------------
def test_a_target_uri_without_auth_source_uses_db_auth_source(case: MongoCase, tmp_path: Path) -> None:
    import pymongo

    server = case.server
    admin: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(server.uri(""), serverSelectionTimeoutMS=10000)
    admin.authdb.command("createUser", "appuser", pwd="app-user-pw-42", roles=[])  # a user of another database
    env = {
        "DB_ENGINE": "mongo",
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(server.port),
        "DB_NAME": case.database,
        "DB_USER": "appuser",
        "DB_PASSWORD": "app-user-pw-42",
        "DB_AUTH_SOURCE": "authdb",
        "RCLONE_REMOTE": str(tmp_path / "r"),
        "BACKUP_SCHEDULE": "once",
    }
    proc = _run(["run"], env)
    assert proc.returncode == 0, proc.stderr
    restored = f"{case.database}_copy"
    target = f"mongodb://appuser:app-user-pw-42@127.0.0.1:{server.port}/{restored}"  # no authSource
    proc = _run(["restore", "--target", target], env)
    assert proc.returncode == 0, proc.stderr
    assert "app-user-pw-42" not in proc.stderr
    assert admin[restored].customers.count_documents({}) == 300
    admin.drop_database(restored)
    admin.close()


# -- 5. changing BACKUP_MODE or BACKUP_COMPRESS never hides older backups --------------------------------------
def test_tar_and_folder_backups_stay_listed_after_the_mode_changes(case: MongoCase, tmp_path: Path) -> None:
    remote = str(tmp_path / "remote")
    work = str(tmp_path / "work")
    tar = dbstash.backup(
        settings=Settings.create(case.uri(), remote=remote, mode="tar", compress="zstd", temp_dir=work)
    )
    folder = dbstash.backup(settings=Settings.create(case.uri(), remote=remote, mode="directory", temp_dir=work))
    now = Settings.create(case.uri(), remote=remote)  # stream mode, no compression
    listed = {b.name: b.complete for b in dbstash.list_backups(now)}
    assert listed.get(tar.name) is True and listed.get(folder.name) is True
    target = case.fresh_target(str(tmp_path))
    assert dbstash.restore(now, tar.name, target=target).checksum_verified
    assert case.target_snapshot(target) == case.snapshot()


# -- 6. restore-side flags: FerretDB refuses mongorestore's index option "ns" -------------------------------------
def test_restore_extra_args_reach_the_restore_tool(case: MongoCase, tmp_path: Path) -> None:
    import pymongo

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        case.server.uri(""), serverSelectionTimeoutMS=10000
    )
    client[case.database].customers.create_index("name")
    client.close()
    settings = Settings.create(case.uri(), remote=str(tmp_path / "remote"))
    dbstash.backup(settings=settings)
    with pytest.raises(RestoreError, match="mongorestore"):
        dbstash.restore(settings, target=case.fresh_target(str(tmp_path)))
    fixed = Settings.create(case.uri(), remote=str(tmp_path / "remote"), restore_extra_args="--noIndexRestore")
    target = case.fresh_target(str(tmp_path))
    assert dbstash.restore(fixed, target=target).checksum_verified
    assert case.target_snapshot(target) == case.snapshot()


# -- tampered archives are refused before mongorestore sees them ---------------------------------------------
def test_a_tampered_archive_is_refused_before_anything_is_applied(case: MongoCase, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    settings = Settings.create(case.uri(), remote=str(remote))
    backup = dbstash.backup(settings=settings)
    data = bytearray((remote / backup.name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (remote / backup.name).write_bytes(bytes(data))
    target = case.fresh_target(str(tmp_path))
    with pytest.raises(ChecksumMismatch, match="Nothing was applied"):
        dbstash.restore(settings, target=target)
    assert case.target_snapshot(target) == {}


def test_mongo_secrets_stay_out_of_errors(case: MongoCase, tmp_path: Path) -> None:
    proc = _run(["run"], {"DB_URI": case.wrong_uri(), "RCLONE_REMOTE": str(tmp_path / "r"), "BACKUP_SCHEDULE": "once"})
    assert proc.returncode == 1 and "wrong-pw-123" not in proc.stderr and "Authentication failed" in proc.stderr

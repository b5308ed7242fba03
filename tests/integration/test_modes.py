"""Directory and tar modes: round trips restored by hand with the native tools, the commit protocol
(the manifest is the completion marker), retention of folders, and the temp folder always removed."""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dbstash
from dbstash import BackupTimeout, ConfigError, DumpFailed, Settings, UploadFailed
from dbstash.jobs.manifest import Manifest, manifest_name
from tests.support.dbservers import MariaDbServer
from tests.support.servers import PgServer, S3Server, children_named

pytestmark = pytest.mark.integration


def pg_table(pg: PgServer, rows: int = 3000) -> str:
    table = f"m_{uuid.uuid4().hex[:8]}"
    pg.psql(
        f"CREATE TABLE {table}(id int primary key, v text);"
        f"INSERT INTO {table} SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g"
    )
    return table


def pg_restore_folder(pg: PgServer, folder: Path) -> str:
    target = f"restore_{uuid.uuid4().hex[:8]}"
    pg.createdb(target)
    subprocess.run(
        [os.path.join(pg.bindir, "pg_restore"), "--no-owner", "--exit-on-error", "-d", target, str(folder)],
        env=pg.env(target),
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.mark.parametrize("mode", ["directory", "tar"])
def test_pg_round_trip(pg: PgServer, tmp_path: Path, temp_dir: Path, mode: str) -> None:
    table = pg_table(pg)
    remote = tmp_path / "remote"
    settings = Settings.create(
        pg.uri(), remote=str(remote), mode=mode, temp_dir=str(temp_dir), dump_extra_args="--jobs 2"
    )
    result = dbstash.backup(settings=settings)
    manifest = Manifest.from_json((remote / manifest_name(result.name)).read_bytes())
    assert manifest.mode == mode and manifest.sha256 == result.sha256
    if mode == "directory":
        folder = remote / result.name
        assert folder.is_dir() and (folder / "toc.dat").exists()
        assert manifest.files is not None and set(manifest.files) == {
            str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
        }
    else:
        assert result.name.endswith(".tar")
        folder = tmp_path / "untar"
        with tarfile.open(remote / result.name) as tar:
            tar.extractall(folder, filter="data")
    target = pg_restore_folder(pg, folder)
    assert pg.psql(f"SELECT count(*), sum(id) FROM {table}", target) == pg.psql(
        f"SELECT count(*), sum(id) FROM {table}"
    )
    assert os.listdir(temp_dir) == [], "the run's work folder is removed"


@pytest.mark.parametrize("mode", ["directory", "tar"])
@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])
def test_mysql_one_file_per_table_round_trip(
    mariadb: MariaDbServer, tmp_path: Path, temp_dir: Path, mode: str, scheme: str
) -> None:
    db = f"modes_{uuid.uuid4().hex[:6]}"
    mariadb.sql(f"CREATE DATABASE {db}")
    mariadb.sql(
        "CREATE TABLE a(id INT PRIMARY KEY, v TEXT); INSERT INTO a SELECT seq, CONCAT('row ', seq) FROM seq_1_to_500;"
        "CREATE TABLE b(id INT PRIMARY KEY, a_id INT, FOREIGN KEY (a_id) REFERENCES a(id));"
        "INSERT INTO b SELECT seq, seq FROM seq_1_to_100; CREATE VIEW v AS SELECT * FROM a WHERE id < 10;",
        db,
    )
    remote = tmp_path / "remote"
    uri = mariadb.uri(scheme=scheme, database=db)
    result = dbstash.backup(
        settings=Settings.create(
            uri, remote=str(remote), mode=mode, temp_dir=str(temp_dir), compress="zstd" if mode == "tar" else False
        )
    )
    if mode == "directory":
        folder = remote / result.name
    else:
        assert result.name.endswith(".tar.zst")
        import zstandard

        folder = tmp_path / "untar"
        with (
            open(remote / result.name, "rb") as fh,
            zstandard.ZstdDecompressor().stream_reader(fh) as raw,
            tarfile.open(fileobj=raw, mode="r|") as tar,
        ):
            tar.extractall(folder, filter="data")
    names = sorted(os.listdir(folder))
    assert any(n.endswith("-table-a.sql") for n in names) and any(n.endswith("-table-b.sql") for n in names)
    target = f"restored_{uuid.uuid4().hex[:6]}"
    mariadb.sql(f"CREATE DATABASE {target}")
    mariadb.load(b"".join((folder / n).read_bytes() for n in names), target)  # the files in name order
    assert mariadb.table_rows(target) == mariadb.table_rows(db)
    assert os.listdir(temp_dir) == []


@pytest.mark.parametrize("mode", ["directory", "tar"])
def test_redis_and_sqlite_have_no_multi_file_modes(tmp_path: Path, sqlite_db: Path, mode: str) -> None:
    for uri in ("redis://:pw@127.0.0.1:1/0", f"sqlite:///{sqlite_db}"):
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"DB_URI": uri, "RCLONE_REMOTE": str(tmp_path), "BACKUP_MODE": mode})
        assert info.value.variable == "BACKUP_MODE" and "stream" in str(info.value)
    with pytest.raises(ConfigError, match="BACKUP_TEMP_DIR"):
        Settings.from_env(
            {"DB_URI": "mysql://u@h/db", "RCLONE_REMOTE": "/x", "BACKUP_MODE": "tar", "BACKUP_TEMP_DIR": "rel"}
        )


# -- failures: nothing complete-looking, the work folder always removed --------------------------
def _no_complete_backup(remote: Path) -> None:
    names = os.listdir(remote) if remote.exists() else []
    assert not [n for n in names if n.endswith(".dbstash-manifest.json")], names
    assert not [n for n in names if n.endswith(".tar")], names


@pytest.fixture(scope="module")
def modes_big(pg: PgServer) -> Iterator[str]:
    """A table big enough to stop a run in the middle; dropped after the module, since every later
    test backs up this database and restores it (CI disks can be small)."""
    pg.psql(
        "CREATE TABLE IF NOT EXISTS modes_big AS SELECT g, repeat(md5(g::text), 20) p FROM generate_series(1, 300000) g"
    )
    yield "modes_big"
    pg.psql("DROP TABLE IF EXISTS modes_big")


@pytest.mark.parametrize("mode", ["directory", "tar"])
def test_dump_killed_mid_way(pg: PgServer, modes_big: str, tmp_path: Path, temp_dir: Path, mode: str) -> None:
    remote = tmp_path / "remote"
    settings = Settings.create(pg.uri(), remote=str(remote), mode=mode, temp_dir=str(temp_dir))

    def kill() -> None:
        for pid in children_named("pg_dump", os.getpid()):
            os.kill(pid, signal.SIGKILL)

    killer = threading.Timer(0.4, kill)
    killer.start()
    try:
        with pytest.raises(DumpFailed, match="pg_dump"):
            dbstash.backup(settings=settings)
    finally:
        killer.cancel()
    _no_complete_backup(remote)
    assert os.listdir(temp_dir) == []


@pytest.mark.parametrize("engine", ["pg", "mariadb"])
def test_full_disk_names_backup_temp_dir(
    pg: PgServer, mariadb: MariaDbServer, tmp_path: Path, tiny_fs: Path, engine: str
) -> None:
    if engine == "pg":
        pg_table(pg, rows=30000)  # ~4 MB
        uri = pg.uri()
    else:
        db = f"full_{uuid.uuid4().hex[:6]}"
        mariadb.sql(f"CREATE DATABASE {db}")
        mariadb.sql("CREATE TABLE big AS SELECT seq, REPEAT(MD5(seq), 8) p FROM seq_1_to_30000", db)
        uri = mariadb.uri(database=db)
    remote = tmp_path / "remote"
    proc = subprocess.run(
        ["dbstash", "run"],
        env={
            **os.environ,
            "DB_URI": uri,
            "RCLONE_REMOTE": str(remote),
            "BACKUP_SCHEDULE": "once",
            "BACKUP_MODE": "directory",
            "BACKUP_TEMP_DIR": str(tiny_fs),
            "LOG_FORMAT": "text",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "BACKUP_TEMP_DIR" in proc.stderr and "ran out of space" in proc.stderr
    assert os.listdir(tiny_fs) == [], "nothing left in the work dir"
    _no_complete_backup(remote)


def test_rclone_killed_mid_copy(pg: PgServer, modes_big: str, tmp_path: Path, temp_dir: Path, s3: S3Server) -> None:
    folder = f"modes-{uuid.uuid4().hex[:6]}"
    settings = Settings.create(
        pg.uri(),
        remote=s3.remote(folder),
        mode="directory",
        temp_dir=str(temp_dir),
        rclone=dbstash.RcloneOptions(config_text=s3.config, extra_args=("--bwlimit", "4M")),
    )

    def kill_copy() -> None:
        for _ in range(200):
            pids = children_named("rclone", os.getpid(), "copy")
            if pids:
                for p in pids:
                    os.kill(p, signal.SIGKILL)
                return
            threading.Event().wait(0.05)

    killer = threading.Thread(target=kill_copy)
    killer.start()
    with pytest.raises(UploadFailed, match="rclone copy"):
        dbstash.backup(settings=settings)
    killer.join()
    names = s3.files(folder)
    assert not [n for n in names if n.endswith(".dbstash-manifest.json")], names
    assert os.listdir(temp_dir) == []


def test_timeout_removes_the_work_folder(pg: PgServer, modes_big: str, tmp_path: Path, temp_dir: Path) -> None:
    remote = tmp_path / "remote"
    settings = Settings.create(
        pg.uri(),
        remote=str(remote),
        mode="directory",
        temp_dir=str(temp_dir),
        timeout=1.5,
        rclone=dbstash.RcloneOptions(extra_args=("--bwlimit", "2M")),
    )
    with pytest.raises(BackupTimeout):
        dbstash.backup(settings=settings)
    assert os.listdir(temp_dir) == []
    _no_complete_backup(remote)


# -- retention by mode ---------------------------------------------------------------------------------
def test_directory_retention_counts_and_purges_folders(pg: PgServer, tmp_path: Path, temp_dir: Path) -> None:
    pg_table(pg, rows=10)
    remote = tmp_path / "remote"
    remote.mkdir()
    # two older folder backups of this job (with manifests), a folder without manifest, another job's folder
    for day in ("2026-01-01", "2026-01-02"):
        old = remote / f"app-{day}-000000"
        old.mkdir()
        (old / "toc.dat").write_text("x")
        (remote / manifest_name(old.name)).write_bytes(
            Manifest(
                name=old.name,
                size=1,
                sha256="0" * 64,
                engine="pg",
                database="app",
                mode="directory",
                compression=None,
                native_compression=False,
                tool_version=None,
                dbstash_version="0.2.0",
                started_at=f"{day}T00:00:00+00:00",
                finished_at=f"{day}T00:00:01+00:00",
                files={"toc.dat": [1, "0" * 64]},
            ).to_json()
        )
    (remote / "app-2026-01-03-000000").mkdir()
    (remote / "app-2026-01-03-000000" / "half").write_text("x")
    (remote / "other-2026-01-01-000000").mkdir()
    (remote / "other-2026-01-01-000000" / "toc.dat").write_text("x")
    settings = Settings.create(
        pg.uri(), remote=str(remote), mode="directory", temp_dir=str(temp_dir), retention_max_files=2
    )
    result = dbstash.backup(settings=settings)
    assert result.deleted == ("app-2026-01-01-000000",)
    left = sorted(os.listdir(remote))
    assert "app-2026-01-01-000000" not in left and manifest_name("app-2026-01-01-000000") not in left
    assert {"app-2026-01-02-000000", "app-2026-01-03-000000", "other-2026-01-01-000000", result.name} <= set(left)
    listed = {i.name: i.complete for i in dbstash.list_backups(settings)}
    assert listed[result.name] and listed["app-2026-01-03-000000"] is False


def test_sigterm_during_the_upload_removes_the_work_folder(
    pg: PgServer, modes_big: str, tmp_path: Path, temp_dir: Path
) -> None:
    remote = tmp_path / "remote"
    env = {
        **os.environ,
        "DB_URI": pg.uri(),
        "RCLONE_REMOTE": str(remote),
        "BACKUP_SCHEDULE": "once",
        "BACKUP_MODE": "directory",
        "BACKUP_TEMP_DIR": str(temp_dir),
        "RCLONE_EXTRA_ARGS": "--bwlimit 2M",
    }
    proc = subprocess.Popen(["dbstash", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until rclone copy runs: the dump is complete in the work folder
            if children_named("rclone", proc.pid, "copy"):
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("rclone copy never started")
        assert [p for p in temp_dir.iterdir()], "the work folder exists during the upload"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert os.listdir(temp_dir) == []
    _no_complete_backup(remote)


# -- restore of directory and tar backups ------------------------------------------------------------
@pytest.mark.parametrize("mode", ["directory", "tar"])
def test_pg_restore_of_folder_backups_checks_every_byte_first(
    pg: PgServer, tmp_path: Path, temp_dir: Path, mode: str
) -> None:
    table = pg_table(pg)
    remote = tmp_path / "remote"
    settings = Settings.create(pg.uri(), remote=str(remote), mode=mode, temp_dir=str(temp_dir), compress="zstd")
    backup = dbstash.backup(settings=settings)
    target = f"restore_{uuid.uuid4().hex[:8]}"
    pg.createdb(target)
    result = dbstash.restore(settings, target=pg.uri(database=target))
    assert result.checksum_verified and result.sha256 == backup.sha256 and result.tool == "pg_restore"
    assert pg.psql(f"SELECT count(*) FROM {table}", target) == "3000"
    # a damaged file: refused before pg_restore runs, nothing applied, work folder removed
    if mode == "directory":
        victim = next(p for p in (remote / backup.name).iterdir() if p.name.endswith(".dat.gz") or p.name == "toc.dat")
    else:
        victim = remote / backup.name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    other = f"restore_{uuid.uuid4().hex[:8]}"
    pg.createdb(other)
    with pytest.raises(dbstash.ChecksumMismatch, match="nothing was applied"):
        dbstash.restore(settings, target=pg.uri(database=other))
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", other) == "0"
    assert os.listdir(temp_dir) == []


def test_mysql_restore_of_a_directory_backup(mariadb: MariaDbServer, tmp_path: Path, temp_dir: Path) -> None:
    db = f"rdir_{uuid.uuid4().hex[:6]}"
    mariadb.sql(f"CREATE DATABASE {db}")
    mariadb.sql("CREATE TABLE a(id INT PRIMARY KEY, v TEXT); INSERT INTO a SELECT seq, MD5(seq) FROM seq_1_to_300", db)
    settings = Settings.create(
        mariadb.uri(database=db), remote=str(tmp_path / "remote"), mode="directory", temp_dir=str(temp_dir)
    )
    dbstash.backup(settings=settings)
    target = f"rdir_t_{uuid.uuid4().hex[:6]}"
    mariadb.sql(f"CREATE DATABASE {target}")
    dbstash.restore(settings, target=mariadb.uri(database=target))
    assert mariadb.table_rows(target) == mariadb.table_rows(db)


@pytest.mark.parametrize("mode", ["directory", "tar"])
def test_mongo_round_trip(tmp_path: Path, temp_dir: Path, mode: str) -> None:
    """mongodump --out into the work folder; restored with mongorestore --dir through dbstash.restore."""
    from tests.conftest import mongo_peers
    from tests.support.cases import MongoCase
    from tests.support.dbservers import FerretDbServer

    binary, _ = mongo_peers()  # skips, saying why, where mongo-tools cannot be built
    server = FerretDbServer.start(binary)
    case = MongoCase(server, binary)
    try:
        case.seed()
        settings = Settings.create(case.uri(), remote=str(tmp_path / "remote"), mode=mode, temp_dir=str(temp_dir))
        dbstash.backup(settings=settings)
        target = case.fresh_target(str(tmp_path))
        assert dbstash.restore(settings, target=target).checksum_verified
        assert case.target_snapshot(target) == case.snapshot()
        assert os.listdir(temp_dir) == []
    finally:
        case.destroy()
        server.destroy()

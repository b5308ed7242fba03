"""SQLite end to end: round trip through rclone, consistency under writers, locked databases."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

import dbstash
from dbstash import DumpFailed
from dbstash.jobs.manifest import manifest_name

pytestmark = pytest.mark.integration


def restore_sqlite(dump: bytes, target: Path) -> sqlite3.Connection:
    subprocess.run(["sqlite3", str(target)], input=dump, check=True, capture_output=True)
    return sqlite3.connect(target)


def rows(con: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    return con.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def test_round_trip_local(sqlite_db: Path, remote_dir: Path, tmp_path: Path) -> None:
    result = dbstash.backup(f"sqlite:///{sqlite_db}", remote=str(remote_dir))
    stored = (remote_dir / result.name).read_bytes()
    assert result.name.startswith("app-") and result.name.endswith(".sql")
    assert result.size == len(stored)
    assert result.sha256 == hashlib.sha256(stored).hexdigest()
    assert result.remote_path == f"{remote_dir}/{result.name}"
    assert sorted(p.name for p in remote_dir.iterdir()) == [result.name, manifest_name(result.name)]  # no partial
    restored = restore_sqlite(stored, tmp_path / "restored.db")
    original = sqlite3.connect(sqlite_db)
    for table in ("users", "orders"):
        assert rows(restored, table) == rows(original, table)
        assert len(rows(restored, table)) > 100


def test_round_trip_s3(sqlite_db: Path, s3: object, tmp_path: Path) -> None:
    from tests.support.servers import S3Server

    assert isinstance(s3, S3Server)
    result = dbstash.backup(
        f"sqlite:///{sqlite_db}",
        remote=s3.remote("sqlite-rt"),
        rclone=dbstash.RcloneOptions(config_text=s3.config),
    )
    assert s3.files("sqlite-rt") == [result.name, manifest_name(result.name)]

    async def read() -> bytes:
        async with dbstash.RcloneCliStorage(s3.remote("sqlite-rt"), dbstash.RcloneOptions(config_text=s3.config)) as st:
            return await st.read(result.name)

    import anyio

    data = anyio.run(read)
    assert hashlib.sha256(data).hexdigest() == result.sha256
    restored = restore_sqlite(data, tmp_path / "r.db")
    assert rows(restored, "users") == rows(sqlite3.connect(sqlite_db), "users")


def _writer(path: Path, stop: threading.Event, journal: str, errors: list[str]) -> None:
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.execute(f"PRAGMA journal_mode={journal}")
    n = 0
    while not stop.is_set():
        try:
            con.execute("BEGIN IMMEDIATE")
            # each transaction writes a pair: a consistent snapshot never holds half a pair
            con.execute("INSERT INTO pairs(grp, side) VALUES (?, 'a')", (n,))
            con.execute("INSERT INTO pairs(grp, side) VALUES (?, 'b')", (n,))
            con.execute("COMMIT")
            n += 1
        except sqlite3.OperationalError as exc:
            errors.append(str(exc))
            con.execute("ROLLBACK") if con.in_transaction else None
        time.sleep(0.0005)
    con.close()


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_consistent_under_concurrent_writer(tmp_path: Path, remote_dir: Path, journal: str) -> None:
    path = tmp_path / "busy.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA journal_mode={journal}")
    con.execute(
        "CREATE TABLE pairs(id INTEGER PRIMARY KEY, grp INTEGER, side TEXT, pad TEXT DEFAULT (hex(randomblob(200))))"
    )
    con.commit()
    con.close()
    stop = threading.Event()
    errors: list[str] = []
    writer = threading.Thread(target=_writer, args=(path, stop, journal, errors))
    writer.start()
    try:
        time.sleep(0.5)
        results = [
            dbstash.backup(f"sqlite:///{path}", remote=str(remote_dir), name_template="{db}-{uuid}") for _ in range(3)
        ]
    finally:
        stop.set()
        writer.join()
    for i, result in enumerate(results):
        restored = restore_sqlite((remote_dir / result.name).read_bytes(), tmp_path / f"r{i}.db")
        counts = restored.execute("SELECT grp, count(*) FROM pairs GROUP BY grp HAVING count(*) != 2").fetchall()
        assert counts == [], "the dump holds half of a transaction"
        assert restored.execute("SELECT count(*) FROM pairs").fetchone()[0] > 0


def test_locked_database_fails_instead_of_exiting_zero(tmp_path: Path, remote_dir: Path) -> None:
    """sqlite3 prints 'database is locked' into the dump and exits 0; dbstash must fail the run."""
    path = tmp_path / "locked.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=delete")
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.execute("BEGIN EXCLUSIVE")  # hold the lock through the whole dump
    con.execute("INSERT INTO t VALUES (2)")
    try:
        # a short busy timeout (it overrides dbstash's own -cmd) so the test does not wait 30 s
        with pytest.raises(DumpFailed, match=r"inside the dump|incomplete"):
            dbstash.backup(f"sqlite:///{path}", remote=str(remote_dir), dump_extra_args=["-cmd", ".timeout 100"])
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert not remote_dir.exists() or list(remote_dir.iterdir()) == []


def test_sqlite3_really_exits_zero_when_locked(tmp_path: Path) -> None:
    """Guards the premise of the test above: if the shell ever starts failing properly, this says so."""
    path = tmp_path / "locked2.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE t(x)")
    con.execute("BEGIN EXCLUSIVE")
    con.execute("INSERT INTO t VALUES (2)")
    try:
        proc = subprocess.run(["sqlite3", "-bail", "-cmd", ".timeout 100", str(path), ".dump"], capture_output=True)
    finally:
        con.execute("ROLLBACK")
    assert proc.returncode == 0
    assert b"locked" in proc.stdout + proc.stderr

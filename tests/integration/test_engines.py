"""MySQL, MariaDB, Redis and MongoDB against real servers: one suite, parametrized over the engines.

Round trips restore with each engine's own tool (mysql client, redis-server loading the RDB,
mongorestore) and compare the data. Failure tests kill the server mid-dump or use a wrong password:
the run fails and nothing complete-looking is left on the remote. An argv scan runs during every
backup: no password in any process's command line.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import dbstash
from dbstash import BackupResult, DumpFailed, RcloneOptions
from dbstash.jobs.manifest import manifest_name
from dbstash.jobs.naming import PARTIAL_MARK
from dbstash.parts.compression import parse_compress
from tests.support.cases import EngineCase
from tests.support.servers import ArgvScan, S3Server, children_named, kill_when

pytestmark = pytest.mark.integration
SLOW = RcloneOptions(extra_args=("--bwlimit", "4M", "--buffer-size", "0"))


def read_remote(remote: Path, name: str) -> bytes:
    return (remote / name).read_bytes()


def stored_names(remote: Path) -> list[str]:
    return sorted(os.listdir(remote)) if remote.exists() else []


def plain_bytes(data: bytes, compress: str) -> bytes:
    """Undo dbstash's own (in-stream) compression, as a restore does."""
    _, stream = parse_compress(compress)
    if stream is None:
        return data
    d = stream.decompressor()
    return d.compress(data) + d.flush()


@pytest.mark.parametrize("compress", ["false", "true", "zstd", "gzip"])
def test_round_trip(engine_case: EngineCase, tmp_path: Path, compress: str, caplog: pytest.LogCaptureFixture) -> None:
    remote = tmp_path / "remote"
    before = engine_case.snapshot()
    caplog.set_level(logging.WARNING, logger="dbstash")
    with ArgvScan(engine_case.password) as scan:
        result = dbstash.backup(engine_case.uri(), remote=str(remote), compress=compress)
    assert scan.leaks == []
    native = compress == "true" and engine_case.has_native
    ext = engine_case.native_ext if native else engine_case.plain_ext
    ext += {"zstd": ".zst", "gzip": ".gz"}.get(compress, "")
    assert result.name.endswith(ext) and stored_names(remote) == [result.name, manifest_name(result.name)]
    data = read_remote(remote, result.name)
    assert len(data) == result.size
    if compress in ("zstd", "gzip"):
        assert result.dump_size is not None and result.dump_size > result.size
    if compress == "true" and not engine_case.has_native:
        assert any("BACKUP_COMPRESS=true" in r.getMessage() for r in caplog.records), "the spec's warning"
    assert engine_case.restore(plain_bytes(data, compress), native_compressed=native) == before


def test_wrong_password_fails_and_leaves_nothing(engine_case: EngineCase, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    with pytest.raises(DumpFailed) as info:
        dbstash.backup(engine_case.wrong_uri(), remote=str(remote))
    assert "wrong-pw-123" not in str(info.value)
    assert stored_names(remote) == []


def test_cli_exit_codes_and_no_secret_in_output(engine_case: EngineCase, tmp_path: Path) -> None:
    """The entrypoint with env vars only: exit 0 with the password kept out of output; exit 1 on a wrong one."""
    env = {"PATH": os.environ["PATH"], "BACKUP_SCHEDULE": "once", "LOG_LEVEL": "debug"}
    ok = subprocess.run(
        [sys.executable, "-m", "dbstash_cli", "run"],
        env={**env, "DB_URI": engine_case.uri(), "RCLONE_REMOTE": str(tmp_path / "ok")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert engine_case.password not in ok.stdout + ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "dbstash_cli", "run"],
        env={**env, "DB_URI": engine_case.wrong_uri(), "RCLONE_REMOTE": str(tmp_path / "bad")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and "wrong-pw-123" not in bad.stdout + bad.stderr
    assert stored_names(tmp_path / "bad") == []


def test_server_killed_mid_dump(own_engine_case: EngineCase, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    with ArgvScan(own_engine_case.password) as scan, pytest.raises(DumpFailed) as info:
        dbstash.backup(
            own_engine_case.uri(),
            remote=str(remote),
            rclone=SLOW,
            progress=kill_when(4 << 20, own_engine_case.kill_server),
        )
    assert scan.leaks == []
    assert own_engine_case.tool in scan.seen, "the argv scan saw the dump tool run"
    assert info.value.exit_status != 0 or "incomplete" in str(info.value)
    names = stored_names(remote)
    assert not [n for n in names if PARTIAL_MARK not in n], names  # nothing under a final name
    assert names == [], "the partial upload was removed"


def test_dump_tool_killed_mid_stream(own_engine_case: EngineCase, tmp_path: Path) -> None:
    remote = tmp_path / "remote"

    def kill() -> None:
        for pid in children_named(own_engine_case.tool, os.getpid()):
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(DumpFailed, match="SIGKILL"):
        dbstash.backup(own_engine_case.uri(), remote=str(remote), rclone=SLOW, progress=kill_when(4 << 20, kill))
    assert stored_names(remote) == []


def test_all_databases(engine_case: EngineCase, tmp_path: Path) -> None:
    """DB_NAME empty (here: a URI without a database) backs up every database the engine allows."""
    if engine_case.key == "redis":
        # an RDB is always the whole instance: a URI naming database 5 still brings back database 3
        before = engine_case.snapshot()
        assert any(k.startswith("3/") for k in before)
        result = dbstash.backup(engine_case.uri().rsplit("/", 1)[0] + "/5", remote=str(tmp_path / "remote"))
        assert result.name.startswith("redis-")
        data = (tmp_path / "remote" / result.name).read_bytes()
        assert engine_case.restore(data, native_compressed=False) == before
        return
    uri = engine_case.uri().rsplit("/", 1)[0] + "/"
    result = dbstash.backup(uri, remote=str(tmp_path / "remote"))
    assert result.name.startswith("all-") and result.database == "all"
    data = (tmp_path / "remote" / result.name).read_bytes()
    database = getattr(engine_case, "database", "")
    assert database.encode() in data, "the seeded database is part of the all-databases dump"


def test_async_api_and_s3_remote(engine_case: EngineCase, s3: S3Server) -> None:
    folder = f"{engine_case.key}-{os.urandom(3).hex()}"
    options = RcloneOptions(config_text=s3.config)

    async def go() -> BackupResult:
        return await dbstash.abackup(engine_case.uri(), remote=s3.remote(folder), rclone=options, compress="zstd")

    result = anyio.run(go)
    assert s3.files(folder) == [result.name, manifest_name(result.name)]

    async def read() -> bytes:
        async with dbstash.RcloneCliStorage(s3.remote(folder), options) as storage:
            return await storage.read(result.name)

    before = engine_case.snapshot()
    assert engine_case.restore(plain_bytes(anyio.run(read), "zstd"), native_compressed=False) == before


def test_size_estimate_for_the_chunk_size(engine_case: EngineCase) -> None:
    """What an object store's chunk size is chosen from on a first run: information_schema (MySQL,
    MariaDB), INFO memory (Redis), dbStats (MongoDB): one query, a positive number of bytes."""
    engine = dbstash.engine_for_uri(engine_case.uri())
    connection = engine.parse_uri(engine_case.uri())
    estimate = anyio.run(engine.estimate_size, connection)
    assert isinstance(estimate, int) and estimate > 0

"""The composable library (issue 15): Sources, Sinks, Transforms and the Pipeline, as a Python user composes them.

Real processes, real rclone, real servers; the failure matrix runs on both relay paths (raw file
descriptors in a thread, and the async loop) and must always end aborted with nothing committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
import zstandard

import dbstash
from dbstash import (
    BackupTimeout,
    CommandSource,
    Committed,
    Compress,
    DumpFailed,
    DumpSource,
    MemorySink,
    Pipeline,
    RcloneCliStorage,
    Settings,
    Sink,
    SinkUpload,
    StreamSource,
    UploadFailed,
)
from dbstash.jobs.manifest import Manifest, manifest_name
from dbstash.parts.sink import BeforePublish, SizeHint
from tests.support.servers import PgServer, all_cmdlines

pytestmark = pytest.mark.integration


# -- a pure-Python sink in a few lines ------------------------------------------------------------------------
class DictUpload(SinkUpload):
    def __init__(self, store: dict[str, bytes], name: str) -> None:
        self.store, self.name, self.buf = store, name, bytearray()

    async def send(self, item: bytes) -> None:
        self.buf += item

    async def commit(self, size: int, *, before_publish: BeforePublish | None = None) -> Committed:
        self.store[self.name], self.committed = bytes(self.buf), True
        return Committed(self.name, size)

    async def abort(self, *, timeout: float | None = None) -> None:
        self.buf.clear()


class DictSink(Sink):
    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}

    async def begin(
        self, name: str, *, alternative: str | None = None, size_hint: SizeHint | None = None
    ) -> DictUpload:
        return DictUpload(self.store, name)


def test_the_result_says_which_command_the_source_ran(sqlite_db: Path) -> None:
    # the source advertises its command (anyio typed attribute); the result holds it: no state to read back
    engine = dbstash.get_engine("sqlite")
    source = DumpSource(engine, engine.parse_uri(f"sqlite:///{sqlite_db}"))
    result = anyio.run(Pipeline(source, DictSink()).run, "app.sql")
    assert result.command is not None and os.path.basename(result.command.argv[0]) == "sqlite3"
    assert str(sqlite_db) in result.command.argv

    async def rows() -> AsyncIterator[bytes]:
        yield b"x\n"

    assert anyio.run(Pipeline(StreamSource(rows()), DictSink()).run, "rows.txt").command is None


def test_a_sink_of_the_old_protocol_still_works_and_is_told_so(sqlite_db: Path) -> None:
    # dbstash 0.2's sink protocol: begin(name), commit(size) -> str, abort(); kept working with a warning
    with pytest.warns(DeprecationWarning, match="is the sink protocol of dbstash 0.2") as told:

        class OldUpload(SinkUpload):
            def __init__(self, store: dict[str, bytes], name: str) -> None:
                self.store, self.name, self.buf = store, name, bytearray()

            async def send(self, item: bytes) -> None:
                self.buf += item

            async def commit(self, size: int) -> str:  # type: ignore[override]
                self.store[self.name], self.committed = bytes(self.buf), True
                return self.name

            async def abort(self) -> None:  # type: ignore[override]
                self.buf.clear()

    messages = [str(w.message) for w in told]
    assert any("OldUpload.commit(size) is the sink protocol of dbstash 0.2" in m for m in messages)
    assert any("OldUpload.abort() is the sink protocol of dbstash 0.2" in m for m in messages)
    with pytest.warns(DeprecationWarning, match=r"OldSink.begin\(name\)"):

        class OldSink(Sink):
            def __init__(self) -> None:
                self.store: dict[str, bytes] = {}

            async def begin(self, name: str) -> OldUpload:  # type: ignore[override]
                return OldUpload(self.store, name)

    sink = OldSink()
    result = anyio.run(Pipeline(CommandSource(["echo", "hi"]), sink).run, "x")
    assert (result.name, sink.store) == ("x", {"x": b"hi\n"})
    # a failing run aborts it through the old abort()
    failing = OldSink()
    with pytest.raises(DumpFailed):
        anyio.run(Pipeline(CommandSource(["sh", "-c", "echo partial; exit 3"]), failing).run, "y")
    assert failing.store == {}


def test_a_pure_python_sink_takes_a_real_dump(sqlite_db: Path, tmp_path: Path) -> None:
    # the sink above is 19 lines: send, commit, abort, begin
    engine = dbstash.get_engine("sqlite")
    source = DumpSource(engine, engine.parse_uri(f"sqlite:///{sqlite_db}"))
    sink = DictSink()
    result = anyio.run(Pipeline(source, sink).run, "app.sql")
    assert not result.fast_path, "a Python sink has no descriptor: the async path"
    dump = sink.store["app.sql"]
    assert result.size == len(dump) and result.sha256 == hashlib.sha256(dump).hexdigest()
    restored = tmp_path / "restored.db"
    subprocess.run(["sqlite3", str(restored)], input=dump, check=True)
    con = sqlite3.connect(restored)
    assert con.execute("SELECT count(*) FROM users").fetchone() == (200,)
    con.close()


# -- an async-iterator source into rclone ----------------------------------------------------------------------
async def _chunks(n: int, size: int = 300_000) -> AsyncIterator[bytes]:
    for i in range(n):
        yield bytes([i % 256]) * size
        await anyio.sleep(0)


def test_an_async_iterator_source_streams_into_rclone(tmp_path: Path) -> None:
    remote = tmp_path / "remote"

    async def main() -> dbstash.PipelineResult:
        async with RcloneCliStorage(str(remote)) as storage:
            return await Pipeline(StreamSource(_chunks(20)), storage).run("gen.bin")

    result = anyio.run(main)
    data = (remote / "gen.bin").read_bytes()
    assert not result.fast_path and len(data) == 20 * 300_000 == result.size
    assert hashlib.sha256(data).hexdigest() == result.sha256
    assert [n for n in os.listdir(remote)] == ["gen.bin"], "committed under its name, no partial left"


# -- a CommandSource with a secret file ----------------------------------------------------------------------
def test_a_command_source_gets_env_and_secret_files_never_argv(pg: PgServer) -> None:
    pg.psql("CREATE TABLE IF NOT EXISTS lib_cmd(id int); INSERT INTO lib_cmd VALUES (42)")
    secret = "pgpass-line-SECRET-9"
    passfile = f"127.0.0.1:{pg.port}:*:app:{pg.password}\n# {secret}\n".encode()
    seen: list[str] = []

    def scan(stream: object, upload: object) -> None:
        seen.extend(cmd for _, cmd in all_cmdlines())

    # the passfile is an in-memory file the child sees as /dev/fd/N, named in its environment
    source = CommandSource(
        ["pg_dump", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "app", "-w", "-t", "lib_cmd", "app"],
        env={"PGPASSFILE": "{secret:pgpass}"},
        secret_files={"pgpass": passfile},
    )
    sink = MemorySink()
    result = anyio.run(lambda: Pipeline(source, sink).run("lib_cmd.sql", on_started=scan))
    dump = sink.objects["lib_cmd.sql"]
    assert b"CREATE TABLE public.lib_cmd" in dump and b"42" in dump and result.size == len(dump)
    assert seen and not any(secret in cmd or pg.password in cmd for cmd in seen)


# -- zstd into the in-memory sink ------------------------------------------------------------------------------
def test_a_pipeline_with_zstd_into_the_memory_sink() -> None:
    sink = MemorySink()
    source = CommandSource(["seq", "200000"])
    result = anyio.run(Pipeline(source, sink, [Compress("zstd:9")]).run, "seq.txt.zst")
    stored = sink.objects["seq.txt.zst"]
    plain = zstandard.ZstdDecompressor().decompressobj().decompress(stored)
    assert plain == subprocess.run(["seq", "200000"], capture_output=True, check=True).stdout
    assert result.source_size == len(plain) and result.size == len(stored) < len(plain)
    assert result.sha256 == hashlib.sha256(stored).hexdigest()


def test_the_whole_job_runs_on_the_memory_sink(sqlite_db: Path) -> None:
    """What a user's own test does: backup() with MemorySink, manifests and retention included."""
    sink = MemorySink()
    policy = dbstash.RetentionPolicy(max_files=2)
    names = [dbstash.backup(f"sqlite:///{sqlite_db}", storage=sink, retention=policy).name for _ in range(3)]
    kept = sorted(n for n in sink.objects if not n.endswith(".json"))
    assert len(kept) == 2 and names[-1] in kept
    m = Manifest.from_json(sink.objects[manifest_name(names[-1])])
    assert m.sha256 == hashlib.sha256(sink.objects[names[-1]]).hexdigest()
    settings = Settings.create(f"sqlite:///{sqlite_db}", remote="memory:")
    out = sqlite_db.with_name("restored-from-memory.db")
    restored = anyio.run(lambda: dbstash.arestore(settings, target=str(out), storage=sink))
    assert restored.name in kept and restored.checksum_verified
    con = sqlite3.connect(out)
    assert con.execute("SELECT count(*) FROM users").fetchone() == (200,)
    con.close()


# -- the failure matrix, on both relay paths ------------------------------------------------------------------
@pytest.fixture(params=["fast", "async"])
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _sink(path: str, tmp_path: Path, fail_after: int | None = None) -> tuple[Sink, Callable[[], list[str]]]:
    """fast: rclone (a pipe: both ends have descriptors); async: the in-memory sink (no descriptor)."""
    if path == "fast":
        remote = tmp_path / "remote"
        return RcloneCliStorage(str(remote)), lambda: sorted(os.listdir(remote)) if remote.exists() else []
    sink = MemorySink(fail_after=fail_after)
    return sink, lambda: sorted(sink.objects)


def _run(pipeline: Pipeline, name: str = "x.bin") -> dbstash.PipelineResult:
    async def main() -> dbstash.PipelineResult:
        return await pipeline.run(name)

    return anyio.run(main)


BIG = ["sh", "-c", "head -c 20000000 /dev/zero"]


def test_success_takes_the_expected_path(path: str, tmp_path: Path) -> None:
    sink, listing = _sink(path, tmp_path)
    result = _run(Pipeline(CommandSource(BIG), sink))
    assert result.fast_path is (path == "fast") and result.size == 20_000_000
    assert listing() == ["x.bin"]


def test_source_dies_mid_stream(path: str, tmp_path: Path) -> None:
    sink, listing = _sink(path, tmp_path)
    source = CommandSource(["sh", "-c", "head -c 5000000 /dev/zero; exit 3"])
    with pytest.raises(DumpFailed, match="status 3"):
        _run(Pipeline(source, sink))
    assert listing() == []


def test_source_output_fails_its_check(path: str, tmp_path: Path) -> None:
    sink, listing = _sink(path, tmp_path)
    source = CommandSource(
        ["printf", "BEGIN;\\n-- cut"], check=lambda tail: None if tail.endswith(b"COMMIT;\n") else "no COMMIT"
    )
    with pytest.raises(DumpFailed, match="no COMMIT"):
        _run(Pipeline(source, sink))
    assert listing() == []


def test_sink_fails(path: str, tmp_path: Path) -> None:
    if path == "fast":
        # rclone cannot create the remote folder: a file stands where it should be
        (tmp_path / "remote").write_text("in the way")
        sink: Sink = RcloneCliStorage(str(tmp_path / "remote" / "sub"))
        with pytest.raises(UploadFailed):
            _run(Pipeline(CommandSource(BIG), sink))
        assert (tmp_path / "remote").read_text() == "in the way"
        return
    sink, listing = _sink(path, tmp_path, fail_after=3_000_000)
    with pytest.raises(UploadFailed, match="fail_after"):
        _run(Pipeline(CommandSource(BIG), sink))
    assert listing() == []


def test_timeout(path: str, tmp_path: Path) -> None:
    sink, listing = _sink(path, tmp_path)
    source = CommandSource(["sh", "-c", "head -c 100000 /dev/zero; exec sleep 30"])
    with pytest.raises(BackupTimeout):
        _run(Pipeline(source, sink, timeout=1.0))
    assert listing() == []


def test_stall(path: str, tmp_path: Path) -> None:
    sink, listing = _sink(path, tmp_path)
    source = CommandSource(["sh", "-c", "head -c 100000 /dev/zero; exec sleep 30"])
    with pytest.raises(DumpFailed, match="produced no data for 1s"):
        _run(Pipeline(source, sink, stall_timeout=1.0))
    assert listing() == []


def test_cancellation(path: str, tmp_path: Path) -> None:
    sink, listing = _sink(path, tmp_path)
    source = CommandSource(["sh", "-c", "head -c 100000 /dev/zero; exec sleep 30"])
    cancelled: list[bool] = []

    async def main() -> None:
        with anyio.move_on_after(1.0) as scope:
            await Pipeline(source, sink).run("x.bin")
        cancelled.append(scope.cancelled_caught)

    anyio.run(main)
    assert cancelled == [True] and listing() == []
    assert not [p for p in _children() if "sleep 30" in p], "the source process was stopped"


def _children() -> list[str]:
    out = subprocess.run(["ps", "-o", "args=", "--ppid", str(os.getpid())], capture_output=True, text=True)
    return out.stdout.splitlines()


@contextlib.contextmanager
def _installed(tmp_path: Path, name: str, source: str, entry_points: str) -> Iterator[None]:
    """A real installed distribution, importable while the block runs: a package and its dist-info
    (with entry points) in a folder put on sys.path, as pip would leave them."""
    site = tmp_path / f"site-{name}"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(source)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    sys.path.insert(0, str(site))
    try:
        yield
    finally:
        sys.path.remove(str(site))


# -- engines as packages --------------------------------------------------------------------------------------
def test_a_third_party_engine_is_found_through_its_entry_point(tmp_path: Path, sqlite_db: Path) -> None:
    """A real installed distribution (a dist-info folder on sys.path) declaring a dbstash.engines entry point."""
    with _installed(
        tmp_path,
        "dbstash_fakesql",
        "from dbstash.engines.sqlite import SqliteEngine\n"
        "class FakeSqlEngine(SqliteEngine):\n"
        "    key = 'fakesql'\n"
        "    schemes = ('fakesql',)\n",
        "[dbstash.engines]\nfakesql = dbstash_fakesql:FakeSqlEngine\n",
    ):
        engine = dbstash.get_engine("fakesql")
        assert type(engine).__name__ == "FakeSqlEngine"
        assert type(dbstash.engine_for_uri(f"fakesql:///{sqlite_db}")).__name__ == "FakeSqlEngine"
        sink = MemorySink()
        result = dbstash.backup(f"fakesql:///{sqlite_db}", storage=sink, engine=engine)
        assert result.engine == "fakesql" and b"CREATE TABLE users" in sink.objects[result.name]


# -- safe by default --------------------------------------------------------------------------------------------
def test_a_dump_source_masks_its_own_password_whatever_redactor_it_is_given() -> None:
    from dbstash.engines.base import DumpCommand
    from dbstash.redact import Redactor

    engine = dbstash.get_engine("pg")
    conn = engine.parse_uri("postgresql://app:pw-ECHOED-123@127.0.0.1:5432/app")
    # a tool that echoes the password in its error output
    cmd = DumpCommand(("sh", "-c", "echo 'auth failed for pw-ECHOED-123' >&2; exit 2"))
    source = DumpSource(engine, conn, command=cmd)
    with pytest.raises(DumpFailed) as info:
        anyio.run(Pipeline(source, MemorySink(), redactor=Redactor()).run, "x")
    assert "auth failed" in str(info.value) and "pw-ECHOED-123" not in str(info.value)


def test_library_calls_get_the_stall_timeout_and_unique_names_by_default(sqlite_db: Path) -> None:
    assert Pipeline(CommandSource(["true"]), MemorySink()).stall_timeout == 45.0
    assert Settings.create(f"sqlite:///{sqlite_db}", remote="r:").stall_timeout == 45.0
    sink = MemorySink()
    names = {dbstash.backup(f"sqlite:///{sqlite_db}", storage=sink).name for _ in range(3)}
    assert len(names) == 3, "three runs, three backups, even within one second"


def test_a_third_party_notifier_is_configured_through_its_entry_point(tmp_path: Path, sqlite_db: Path) -> None:
    """A real dist-info declaring a dbstash.notifiers factory; the env path builds it, the run notifies it."""
    out = tmp_path / "events.jsonl"
    with _installed(
        tmp_path,
        "dbstash_filenote",
        "import json\n"
        "from dbstash import Notifier\n"
        "class FileNotifier(Notifier):\n"
        "    kind = 'filenote'\n"
        "    def __init__(self, path): self.path = path\n"
        "    def wants(self, stage): return True\n"
        "    def send(self, event):\n"
        "        with open(self.path, 'a') as fh: fh.write(json.dumps([event.stage, event.remote_path]) + '\\n')\n"
        "def from_env(environ):\n"
        "    path = environ.get('FILENOTE_PATH')\n"
        "    return FileNotifier(path) if path else None\n",
        "[dbstash.notifiers]\nfilenote = dbstash_filenote:from_env\n",
    ):
        base = {"DB_URI": f"sqlite:///{sqlite_db}", "RCLONE_REMOTE": str(tmp_path / "r")}
        assert Settings.from_env(base).notifiers() == [], "not configured: the factory returns None"
        settings = Settings.from_env({**base, "FILENOTE_PATH": str(out)})
        result = dbstash.backup(settings=settings)
    lines = [line for line in out.read_text().splitlines() if line]
    assert lines == [f'["start", "{result.remote_path}"]', f'["success", "{result.remote_path}"]']


def test_the_old_begin_upload_name_still_works_and_is_told_so() -> None:
    # Storage.begin_upload (dbstash 0.2) is begin() under its old name, with a DeprecationWarning
    sink = dbstash.MemorySink()

    async def main() -> None:
        with pytest.warns(DeprecationWarning, match=r"begin_upload\(\) is deprecated"):
            upload = await sink.begin_upload("old.bin")
        await upload.send(b"data")
        await upload.commit(4)

    anyio.run(main)
    assert sink.objects == {"old.bin": b"data"}

"""age encryption of the stream: round trips with real servers and the real ``age``, the failure cases,
and scans for key material wherever dbstash writes (argv, logs, manifests, notifications, dry runs).

The backup side gets only public keys; ``restore``/``verify`` decrypt with ``AGE_IDENTITY_FILE``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

import dbstash
from dbstash import AgeEncryption, ChecksumMismatch, ConfigError, RestoreError, Settings
from dbstash.jobs.manifest import Manifest, manifest_name
from tests.support.cases import EngineCase
from tests.support.receivers import HttpReceiver
from tests.support.servers import ArgvScan, PgServer, all_cmdlines

pytestmark = pytest.mark.integration
DBSTASH = [sys.executable, "-m", "dbstash_cli"]


@dataclass(frozen=True)
class Key:
    identity: Path  # the private key file (0600)
    recipient: str  # its public key
    secret: str  # what must never leak (the private key's text)


def age_key(directory: Path, name: str) -> Key:
    path = directory / f"{name}.txt"
    subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True)
    path.chmod(0o600)
    public = subprocess.run(["age-keygen", "-y", str(path)], check=True, capture_output=True, text=True).stdout
    secret = next(line for line in path.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-"))
    return Key(path, public.strip(), secret)


def ssh_key(directory: Path) -> Key:
    path = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    lines = path.read_text().splitlines()
    return Key(path, Path(f"{path}.pub").read_text().strip(), lines[1])  # a line of the private key's body


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    if not all(os.path.exists(f"/usr/bin/{t}") for t in ("age", "age-keygen")):
        pytest.fail("age is not installed (make test installs it with apt)")
    d = tmp_path_factory.mktemp("keys")
    return {"ops": age_key(d, "ops"), "other": age_key(d, "other"), "ssh": ssh_key(d)}


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# -- every engine, stream mode ---------------------------------------------------------------------
def test_round_trip_every_engine(engine_case: EngineCase, keys: dict[str, Key], tmp_path: Path) -> None:
    """MySQL, MariaDB, Redis, MongoDB: zstd, then age to two recipients (age and SSH); restored with the
    SSH identity into a fresh target; the manifest names fingerprints; no key in any argv."""
    remote = tmp_path / "remote"
    ops, ssh = keys["ops"], keys["ssh"]
    settings = Settings.create(
        engine_case.uri(), remote=str(remote), compress="zstd", encrypt_to=[ops.recipient, ssh.recipient]
    )
    before = engine_case.snapshot()
    with ArgvScan(ops.recipient, ssh.recipient, ops.secret, ssh.secret) as scan:
        backup = dbstash.backup(settings=settings)
    assert scan.leaks == []
    assert backup.name.endswith(".zst.age") and backup.encryption == "age"
    stored = (remote / backup.name).read_bytes()
    assert stored.startswith(b"age-encryption.org/v1\n")
    manifest_bytes = (remote / manifest_name(backup.name)).read_bytes()
    manifest = Manifest.from_json(manifest_bytes)
    assert manifest.sha256 == hashlib.sha256(stored).hexdigest() == backup.sha256, "the ciphertext's digest"
    assert manifest.size == len(stored)
    assert manifest.encryption is not None
    assert manifest.encryption["kind"] == "age"
    fingerprints = manifest.encryption["recipients"]
    assert isinstance(fingerprints, list)
    assert len(fingerprints) == 2
    assert fingerprints[1].startswith("SHA256:")
    for secret in (ops.recipient, ssh.recipient.split()[1], ops.secret, ssh.secret):
        assert secret.encode() not in manifest_bytes
    target = engine_case.fresh_target(str(tmp_path))
    restoring = Settings.create(engine_case.uri(), remote=str(remote), compress="zstd", identity_file=ssh.identity)
    with ArgvScan(ops.secret, ssh.secret) as scan:
        result = dbstash.restore(restoring, target=target)
    assert scan.leaks == []
    assert result.checksum_verified and result.sha256 == backup.sha256
    assert engine_case.target_snapshot(target) == before


def pg_rows(pg: PgServer, table: str, database: str | None = None) -> str:
    return pg.psql(f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM {table} t", database)


@pytest.fixture
def pg_table(pg: PgServer) -> str:
    table = f"enc_{os.urandom(3).hex()}"
    pg.psql(f"CREATE TABLE {table}(id int primary key, v text)")
    pg.psql(f"INSERT INTO {table} SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
    return table


@pytest.mark.parametrize("mode", ["stream", "tar"])
def test_postgres_round_trip_stream_and_tar(
    pg: PgServer, pg_table: str, keys: dict[str, Key], tmp_path: Path, mode: str
) -> None:
    remote = tmp_path / "remote"
    ops = keys["ops"]
    extra = {"mode": mode, "temp_dir": str(tmp_path / "work")} if mode == "tar" else {}
    settings = Settings.create(pg.uri(), remote=str(remote), encrypt_to=ops.recipient, **extra)  # type: ignore[arg-type]
    backup = dbstash.backup(settings=settings)
    assert backup.name.endswith(".tar.age" if mode == "tar" else ".sql.age")
    assert b"CREATE TABLE" not in (remote / backup.name).read_bytes()
    target = f"restored_{os.urandom(3).hex()}"
    pg.createdb(target)
    restoring = Settings.create(pg.uri(), remote=str(remote), identity_file=ops.identity, **extra)  # type: ignore[arg-type]
    result = dbstash.restore(restoring, target=pg.uri(database=target))
    assert result.checksum_verified
    assert pg_rows(pg, pg_table, target) == pg_rows(pg, pg_table)


def test_sqlite_round_trip_and_verify(sqlite_db: Path, keys: dict[str, Key], tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    ops = keys["ops"]
    settings = Settings.create(
        f"sqlite:///{sqlite_db}", remote=str(remote), encrypt_to=ops.recipient, identity_file=ops.identity
    )
    backup = dbstash.backup(settings=settings)
    out = tmp_path / "restored.db"
    dbstash.restore(settings, target=str(out))
    with sqlite3.connect(sqlite_db) as a, sqlite3.connect(out) as b:
        assert (
            a.execute("SELECT * FROM users ORDER BY 1").fetchall()
            == b.execute("SELECT * FROM users ORDER BY 1").fetchall()
        )
    checked = dbstash.verify(settings)
    assert checked.restore.name == backup.name and checked.restore.checksum_verified
    assert checked.counts.get("users") == 200


# -- failures --------------------------------------------------------------------------------------
def test_wrong_identity_is_a_clear_error_and_the_target_is_untouched(
    sqlite_db: Path, keys: dict[str, Key], tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    dbstash.backup(f"sqlite:///{sqlite_db}", remote=str(remote), encrypt_to=keys["ops"].recipient)
    wrong = Settings.create(f"sqlite:///{sqlite_db}", remote=str(remote), identity_file=keys["other"].identity)
    out = tmp_path / "restored.db"
    with pytest.raises(RestoreError, match="cannot be decrypted with AGE_IDENTITY_FILE") as info:
        dbstash.restore(wrong, target=str(out))
    assert "no identity matched" in str(info.value)
    assert keys["other"].secret not in str(info.value)
    assert not out.exists() and os.listdir(tmp_path / "remote") != []
    assert [p for p in tmp_path.iterdir() if p.name.startswith("restored.db")] == [], "no temp file left"


def test_wrong_identity_into_postgres_applies_nothing(
    pg: PgServer, pg_table: str, keys: dict[str, Key], tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    dbstash.backup(pg.uri(), remote=str(remote), encrypt_to=keys["ops"].recipient)
    target = f"restored_{os.urandom(3).hex()}"
    pg.createdb(target)
    wrong = Settings.create(pg.uri(), remote=str(remote), identity_file=keys["other"].identity)
    with pytest.raises(RestoreError, match="cannot be decrypted"):
        dbstash.restore(wrong, target=pg.uri(database=target))
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", target) == "0"


def test_flipped_byte_is_refused_before_the_tool_applies_anything(
    engine_case: EngineCase, keys: dict[str, Key], tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    ops = keys["ops"]
    settings = Settings.create(
        engine_case.uri(), remote=str(remote), encrypt_to=ops.recipient, identity_file=ops.identity
    )
    backup = dbstash.backup(settings=settings)
    flip(remote / backup.name)
    target = engine_case.fresh_target(str(tmp_path))
    file_target = os.path.isabs(target)  # Redis restores into a file: none may be written
    empty = None if file_target else engine_case.target_snapshot(target)
    with pytest.raises(ChecksumMismatch, match="corrupted"):
        dbstash.restore(settings, target=target)
    if file_target:
        assert not os.path.exists(target)
    else:
        assert engine_case.target_snapshot(target) == empty


def test_without_its_manifest_age_itself_refuses_a_flipped_byte(
    sqlite_db: Path, keys: dict[str, Key], tmp_path: Path
) -> None:
    """No manifest to compare with: age authenticates every chunk, so the damage is still caught."""
    remote = tmp_path / "remote"
    ops = keys["ops"]
    settings = Settings.create(
        f"sqlite:///{sqlite_db}", remote=str(remote), encrypt_to=ops.recipient, identity_file=ops.identity
    )
    backup = dbstash.backup(settings=settings)
    (remote / manifest_name(backup.name)).unlink()
    flip(remote / backup.name)
    out = tmp_path / "restored.db"
    with pytest.raises(RestoreError, match="cannot be decrypted"):
        dbstash.restore(settings, target=str(out), allow_unverified=True)
    assert not out.exists()


def test_a_failing_dump_leaves_nothing_even_though_age_ends_its_stream_cleanly(
    keys: dict[str, Key], tmp_path: Path
) -> None:
    """age turns an early end of its input into a valid ciphertext: only the source's verdict stops the
    commit. Both relay paths (descriptors: rclone; async: MemorySink)."""
    encryption = AgeEncryption((keys["ops"].recipient,))
    failing = dbstash.CommandSource(["sh", "-c", "seq 200000; exit 3"])

    async def main() -> None:
        sink = dbstash.MemorySink()
        with pytest.raises(dbstash.DumpFailed, match="status 3"):
            await dbstash.Pipeline(failing, sink, [encryption]).run("x.age")
        assert sink.objects == {}
        async with dbstash.RcloneCliStorage(str(tmp_path / "remote")) as storage:
            with pytest.raises(dbstash.DumpFailed, match="status 3"):
                await dbstash.Pipeline(failing, storage, [dbstash.Compress("gzip"), encryption]).run("y.gz.age")
        assert not (tmp_path / "remote").exists() or os.listdir(tmp_path / "remote") == []

    anyio.run(main)


def test_age_failing_fails_the_run(keys: dict[str, Key], tmp_path: Path) -> None:
    """The filter's exit status is part of the verdict: a killed age commits nothing."""

    class Dying(AgeEncryption):
        def command(self) -> dbstash.DumpCommand:
            return dbstash.DumpCommand(("sh", "-c", "head -c 100000; exit 4"))

    async def main() -> None:
        sink = dbstash.MemorySink()
        with pytest.raises((dbstash.DumpFailed, dbstash.UploadFailed)):
            await dbstash.Pipeline(
                dbstash.CommandSource(["seq", "300000"]), sink, [Dying((keys["ops"].recipient,))]
            ).run("z.age")
        assert sink.objects == {}

    anyio.run(main)


def test_library_errors_name_parameters(sqlite_db: Path, keys: dict[str, Key], tmp_path: Path) -> None:
    uri = f"sqlite:///{sqlite_db}"
    with pytest.raises(ConfigError, match="encrypt_to") as bad:
        Settings.create(uri, remote=str(tmp_path), encrypt_to=keys["ops"].secret)
    assert keys["ops"].secret not in str(bad.value)
    loose = tmp_path / "loose.txt"
    loose.write_text(keys["ops"].identity.read_text())
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as open_key:
        Settings.create(uri, remote=str(tmp_path), identity_file=loose)
    assert open_key.value.variable == "identity_file"
    with pytest.raises(ConfigError, match="directory"):
        Settings.create(uri, remote=str(tmp_path), encrypt_to=keys["ops"].recipient, mode="directory")
    remote = tmp_path / "remote"
    backup = dbstash.backup(uri, remote=str(remote), encrypt_to=keys["ops"].recipient)
    with pytest.raises(ConfigError) as missing:
        dbstash.restore(Settings.create(uri, remote=str(remote)), backup.name, target=str(tmp_path / "r.db"))
    assert missing.value.variable == "AGE_IDENTITY_FILE"


# -- the env path: entrypoint, CLI restore, notifications, dry run -----------------------------------
def test_entrypoint_env_path_never_shows_a_key(sqlite_db: Path, keys: dict[str, Key], tmp_path: Path) -> None:
    ops, ssh = keys["ops"], keys["ssh"]
    recipients_file = tmp_path / "recipients.txt"
    recipients_file.write_text(f"# the ops team\n{ops.recipient}\n")
    receiver = HttpReceiver().start()
    remote = tmp_path / "remote"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "DB_URI": f"sqlite:///{sqlite_db}",
        "RCLONE_REMOTE": str(remote),
        "BACKUP_SCHEDULE": "once",
        "BACKUP_ENCRYPT": "age",
        "AGE_RECIPIENTS": ssh.recipient,
        "AGE_RECIPIENTS_FILE": str(recipients_file),
        "NOTIFY_WEBHOOK_URL": receiver.url("/hook"),
        "NOTIFY_ON": "always",
        "LOG_LEVEL": "debug",
    }
    try:
        with ArgvScan(ops.recipient, ssh.recipient, ops.secret, ssh.secret) as scan:
            run = subprocess.run([*DBSTASH, "run"], env=env, capture_output=True, text=True, timeout=120)
            dry = subprocess.run([*DBSTASH, "run"], env={**env, "DRY_RUN": "true"}, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert dry.returncode == 0, dry.stderr
    finally:
        receiver.stop()
    assert scan.leaks == []
    assert "age" in dry.stdout + dry.stderr
    bodies = b"".join(r.body for r in receiver.requests)
    assert bodies
    public_parts = (ops.recipient, ssh.recipient.split()[1])
    for text in (run.stdout + run.stderr, dry.stdout + dry.stderr, bodies.decode()):
        for secret in (*public_parts, ops.secret, ssh.secret):
            assert secret not in text
    names = sorted(os.listdir(remote))
    assert len(names) == 2 and names[0].endswith(".sql.age")
    out = tmp_path / "restored.db"
    restore_env = {k: v for k, v in env.items() if not k.startswith(("AGE_RECIPIENTS", "BACKUP_ENCRYPT"))}
    done = subprocess.run(
        [*DBSTASH, "restore", "--target", str(out), "--json"],
        env={**restore_env, "AGE_IDENTITY_FILE": str(ops.identity)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checksum_verified"] is True
    assert ops.secret not in done.stdout + done.stderr
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] > 0


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"BACKUP_ENCRYPT": "age"}, "AGE_RECIPIENTS"),
        ({"BACKUP_ENCRYPT": "gpg", "AGE_RECIPIENTS": "x"}, "BACKUP_ENCRYPT"),
        ({"AGE_RECIPIENTS": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}, "BACKUP_ENCRYPT"),
        ({"BACKUP_ENCRYPT": "age", "AGE_RECIPIENTS": "ssh-dss AAAA"}, "AGE_RECIPIENTS"),
        ({"BACKUP_ENCRYPT": "age", "AGE_RECIPIENTS_FILE": "/nonexistent/recipients"}, "AGE_RECIPIENTS_FILE"),
        ({"AGE_IDENTITY_FILE": "/nonexistent/key.txt"}, "AGE_IDENTITY_FILE"),
    ],
)
def test_bad_encryption_settings_exit_2_naming_the_variable(
    sqlite_db: Path, tmp_path: Path, extra: dict[str, str], variable: str
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "DB_URI": f"sqlite:///{sqlite_db}",
        "RCLONE_REMOTE": str(tmp_path / "remote"),
        "BACKUP_SCHEDULE": "once",
        **extra,
    }
    done = subprocess.run([*DBSTASH, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert variable in done.stderr
    assert not (tmp_path / "remote").exists()


def test_a_private_key_given_as_recipient_is_refused_without_echoing_it(
    sqlite_db: Path, keys: dict[str, Key], tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "DB_URI": f"sqlite:///{sqlite_db}",
        "RCLONE_REMOTE": str(tmp_path / "remote"),
        "BACKUP_SCHEDULE": "once",
        "BACKUP_ENCRYPT": "age",
        "AGE_RECIPIENTS": keys["ops"].secret,
    }
    done = subprocess.run([*DBSTASH, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "private key" in done.stderr and keys["ops"].secret not in done.stderr


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("how", ["rclone killed", "cancelled"])
def test_a_failing_upload_or_a_cancellation_stops_age_and_leaks_nothing(
    keys: dict[str, Key], tmp_path: Path, how: str
) -> None:
    """The filter stage's clean-up: age is stopped, both relay threads end before its pipes close, nothing
    is committed, no descriptor is left open (a service runs hundreds of these)."""
    encryption = AgeEncryption((keys["ops"].recipient,))
    source = dbstash.CommandSource(["head", "-c", "200000000", "/dev/urandom"])  # incompressible
    slow = dbstash.RcloneOptions(extra_args=("--bwlimit", "2M"))
    before = _fds()

    async def main() -> None:
        async with dbstash.RcloneCliStorage(str(tmp_path / "remote"), slow) as storage:
            pipeline = dbstash.Pipeline(source, storage, [dbstash.Compress("gzip:1"), encryption])
            if how == "cancelled":
                with anyio.move_on_after(1.5) as scope:
                    await pipeline.run("big.gz.age")
                assert scope.cancelled_caught
                return

            async def kill_rclone() -> None:
                await anyio.sleep(1.5)
                for pid, cmd in all_cmdlines():
                    if "rclone" in cmd.split(" ", 1)[0] and "rcat" in cmd and "big.gz.age" in cmd:
                        os.kill(pid, 9)

            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_rclone)
                with pytest.raises(dbstash.UploadFailed):
                    await pipeline.run("big.gz.age")

    anyio.run(main)
    remote = tmp_path / "remote"
    assert not remote.exists() or [n for n in os.listdir(remote) if not n.endswith(".dbstash-partial")] == []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(cmd.startswith("/usr/bin/age ") for _, cmd in all_cmdlines()):
        time.sleep(0.1)
    assert not any(cmd.startswith("/usr/bin/age -e") for _, cmd in all_cmdlines()), "age is stopped"
    assert _fds() <= before, "no descriptor left open"

"""One dump, several destinations (issue 28): PostgreSQL into two ``rclone serve s3`` servers and a local
folder at once, with real rclone, real servers and real failures (a server killed, a server frozen with
SIGSTOP, dbstash itself killed at random moments)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import dbstash
from dbstash.errors import UploadFailed
from dbstash.jobs.manifest import MANIFEST_SUFFIX, Manifest
from dbstash.jobs.naming import PARTIAL_MARK
from dbstash.settings.options import RcloneOptions
from dbstash.storage.rclone_cli import RcloneCliStorage
from tests.support.servers import PgServer, S3Server, all_cmdlines, children_named, kill_when
from tests.support.transports import RcDaemon

pytestmark = pytest.mark.integration
DBSTASH = [sys.executable, "-m", "dbstash_cli"]
#: rclone gives up on a dead server after one try each (by default it retries for about a minute)
FAST_FAILING = ("--bwlimit", "20M", "--retries", "1", "--low-level-retries", "1", "--contimeout", "2s")


@pytest.fixture(scope="module")
def big(pg: PgServer) -> Iterator[str]:
    """~45 MB of rows: big enough that a destination can fail in the middle; dropped after the module."""
    pg.psql(
        "CREATE TABLE IF NOT EXISTS fan_big AS SELECT g AS id, repeat(md5(g::text), 9) AS pad "
        "FROM generate_series(1, 150000) g"
    )
    yield "fan_big"
    pg.psql("DROP TABLE IF EXISTS fan_big")


@pytest.fixture
def two_s3(rclone_bin: str, tmp_path: Path) -> Iterator[tuple[S3Server, S3Server]]:
    """Two ``rclone serve s3`` servers of their own (the tests kill and freeze them)."""
    servers = []
    for label in ("one", "two"):
        started = S3Server.start(rclone_bin, str(tmp_path / f"s3-{label}"))
        servers.append(S3Server(started.root, started.port, started.proc, remote_name=f"s3{label}"))
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            if server.proc.poll() is None:
                os.kill(server.proc.pid, signal.SIGCONT)
            server.stop()


def config_of(*servers: S3Server) -> str:
    return "".join(s.config for s in servers)


def env_for(remotes: list[str], servers: tuple[S3Server, ...], **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "RCLONE_REMOTE": "\n".join(remotes),
        "RCLONE_CONFIG": base64.b64encode(config_of(*servers).encode()).decode(),
        "BACKUP_SCHEDULE": "once",
        "LOG_FORMAT": "text",
        **extra,
    }


def folder_of(server: S3Server, folder: str) -> Path:
    return Path(server.root) / server.bucket / folder


def backups_in(path: Path) -> list[Path]:
    """Objects under a final name (complete-looking): neither manifests nor claims and partials."""
    if not path.exists():
        return []
    return sorted(
        p
        for p in path.iterdir()
        if not p.name.endswith((MANIFEST_SUFFIX, ".sig"))
        and PARTIAL_MARK not in p.name
        and not p.name.startswith(".rclone_temp")
    )


def check_against_manifest(backup: Path) -> Manifest:
    """*backup* holds exactly the bytes its manifest names."""
    manifest = Manifest.from_json(backup.with_name(backup.name + MANIFEST_SUFFIX).read_bytes())
    data = backup.read_bytes()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (manifest.size, manifest.sha256), backup
    return manifest


def rclones_for(folder: str) -> list[int]:
    """rclone processes (any parent: a killed run's are orphans) working on *folder*."""
    return [pid for pid, cmd in all_cmdlines() if "rclone" in cmd.split(" ", 1)[0] and f"/{folder}" in cmd]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DBSTASH, *args], env=env, capture_output=True, text=True, timeout=300)


def test_one_dump_to_two_s3_servers_and_a_local_folder_gives_identical_copies(
    pg: PgServer, big: str, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    one, two = two_s3
    folder = f"fan-{uuid.uuid4().hex[:6]}"
    local = tmp_path / "local"
    env = env_for([one.remote(folder), two.remote(folder), str(local)], two_s3, DB_URI=pg.uri())
    done = run_cli(env, "backup", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [c["committed"] for c in result["copies"]] == [True, True, True]
    paths = [folder_of(one, folder) / result["name"], folder_of(two, folder) / result["name"], local / result["name"]]
    contents = {p.read_bytes() for p in paths}
    assert len(contents) == 1, "three byte-identical copies"
    assert hashlib.sha256(contents.pop()).hexdigest() == result["sha256"]
    manifests = {p.with_name(p.name + MANIFEST_SUFFIX).read_bytes() for p in paths}
    assert len(manifests) == 1, "identical manifests"
    assert "pg_dump" in result["tool_version"] or result["tool_version"]


def test_a_destination_killed_mid_stream_leaves_the_others_committed(
    pg: PgServer, big: str, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    """The second S3 server dies in the middle: with ``all`` the run fails (exit 1) and with ``any`` it
    succeeds, and in both the first server and the local folder hold complete copies; the dead server
    holds nothing complete-looking."""
    one, two = two_s3
    folder = f"fan-kill-{uuid.uuid4().hex[:6]}"
    local = tmp_path / "local"
    settings = dbstash.Settings.create(
        pg.uri(),
        remote=[one.remote(folder), two.remote(folder), str(local)],
        rclone=RcloneOptions(config_text=config_of(one, two), extra_args=FAST_FAILING),
        stall_timeout=4,  # rclone retries a dead server: the FanOut drops it once it stops reading
    )
    with pytest.raises(UploadFailed, match=r"2 of 3 destinations \(all required\)") as failed:
        dbstash.backup(settings=settings, progress=kill_when(8 << 20, two.proc.kill))
    copies = failed.value.copies  # type: ignore[attr-defined]
    assert [c.committed is not None for c in copies] == [True, False, True]
    assert two.remote(folder) in str(failed.value)
    for path in (folder_of(one, folder), local):
        (found,) = backups_in(path)
        check_against_manifest(found)
    assert backups_in(folder_of(two, folder)) == []

    # the same with "any": the run succeeds and says which destination is missing
    two.proc.wait()
    restarted = S3Server.start(rclone_bin_of(one), two.root)
    two_again = S3Server(restarted.root, restarted.port, restarted.proc, remote_name=two.remote_name)
    try:
        folder2 = folder + "-any"
        settings = dbstash.Settings.create(
            pg.uri(),
            remote=[one.remote(folder2), two_again.remote(folder2), str(local / "any")],
            required_destinations="any",
            rclone=RcloneOptions(config_text=config_of(one, two_again), extra_args=FAST_FAILING),
            stall_timeout=4,
        )
        result = dbstash.backup(settings=settings, progress=kill_when(8 << 20, two_again.proc.kill))
        assert [c.committed for c in result.copies] == [True, False, True]
        assert result.copies[1].error and result.copies[1].remote == two_again.remote(folder2)
        assert backups_in(folder_of(two_again, folder2)) == []
        check_against_manifest(folder_of(one, folder2) / result.name)
    finally:
        two_again.stop()


def rclone_bin_of(server: S3Server) -> str:
    return str(server.proc.args[0])  # type: ignore[index]


def test_a_frozen_destination_is_dropped_after_the_stall_timeout(
    pg: PgServer, big: str, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    """SIGSTOP of one S3 server: it accepts nothing, is dropped after BACKUP_STALL_TIMEOUT and the others
    commit (``BACKUP_REQUIRED_DESTINATIONS=any``: exit 0)."""
    one, two = two_s3
    folder = f"fan-stall-{uuid.uuid4().hex[:6]}"
    local = tmp_path / "local"
    env = env_for(
        [one.remote(folder), two.remote(folder), str(local)],
        two_s3,
        DB_URI=pg.uri(),
        BACKUP_STALL_TIMEOUT="3s",
        BACKUP_REQUIRED_DESTINATIONS="2",
        # rclone buffers 5 MiB instead of 20: the frozen server's rclone stops reading within the dump
        # 6 MB/s: ~7 s of streaming, so the SIGSTOP lands mid-stream however slowly the CLI starts (a
        # destination frozen after its last byte waits out its commit's own timeouts, as with one)
        RCLONE_EXTRA_ARGS="--bwlimit 6M --s3-upload-concurrency 1",
    )
    proc = subprocess.Popen([*DBSTASH, "backup", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        os.kill(two.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=120)
    finally:
        os.kill(two.proc.pid, signal.SIGCONT)
        proc.kill()
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert [c["committed"] for c in result["copies"]] == [True, False, True]
    assert "accepted no data for 3s" in result["copies"][1]["error"]
    assert time.monotonic() - t0 < 60, "the frozen destination did not hold the run up"
    for path in (folder_of(one, folder), local):
        (found,) = backups_in(path)
        check_against_manifest(found)
    time.sleep(1.2)  # serve s3's directory cache
    assert backups_in(folder_of(two, folder)) == []


def test_sigkill_of_dbstash_at_random_moments_leaves_no_copy_that_differs_from_its_manifest(
    pg: PgServer, big: str, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    """12 SIGKILLs at random moments of runs into two S3 servers and a local folder: every destination
    holds either nothing complete-looking or a copy whose bytes match its manifest."""
    one, two = two_s3
    rng = random.Random(20261204)
    seen = {"nothing": 0, "complete": 0}

    # the kills spread over a whole run, as long as one takes on this machine now (longer under load)
    def env(folder: str) -> dict[str, str]:
        remotes = [one.remote(folder), two.remote(folder), str(tmp_path / folder)]
        return env_for(remotes, two_s3, DB_URI=pg.uri(), RCLONE_EXTRA_ARGS="--bwlimit 40M")

    t0 = time.monotonic()
    whole = run_cli(env("fan-whole"), "run")
    assert whole.returncode == 0, whole.stderr
    span = (time.monotonic() - t0) * 1.2
    for round_ in range(12):
        folder = f"fan-k{round_}-{uuid.uuid4().hex[:6]}"
        local = tmp_path / folder
        proc = subprocess.Popen(
            [*DBSTASH, "run"], env=env(folder), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.05, span))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10  # the guardians stop their rclones within their grace
        while time.monotonic() < deadline and rclones_for(folder):
            time.sleep(0.05)
        time.sleep(1.2)  # serve s3's directory cache
        for path in (folder_of(one, folder), folder_of(two, folder), local):
            found = backups_in(path)
            assert len(found) <= 1, found
            if found:
                check_against_manifest(found[0])
            seen["complete" if found else "nothing"] += 1
    assert seen["nothing"] and seen["complete"], f"the kills should land before and after commits: {seen}"


def test_fanout_of_memory_sinks_drops_a_failing_sink_and_commits_the_others() -> None:
    """The async path (sinks without a descriptor): a sink that fails mid-stream is dropped."""

    a, bad, b = dbstash.MemorySink(), dbstash.MemorySink(fail_after=100_000), dbstash.MemorySink()
    fan = dbstash.FanOut([a, bad, b], labels=["a", "bad", "b"], required=2)
    source = dbstash.CommandSource(["head", "-c", "3000000", "/dev/urandom"])
    result = anyio.run(dbstash.Pipeline(source, fan).run, "x.bin")
    assert [c.committed is not None for c in result.copies] == [True, False, True]
    assert "failed after 100000 bytes" in (result.copies[1].error or "")
    assert a.objects["x.bin"] == b.objects["x.bin"] and len(a.objects["x.bin"]) == 3_000_000
    assert not [n for n in bad.objects if not n.endswith(PARTIAL_MARK)], bad.objects


def test_fanout_fast_path_copies_to_every_rclone_and_says_so(tmp_path: Path) -> None:
    a = RcloneCliStorage(str(tmp_path / "a"), RcloneOptions())
    b = RcloneCliStorage(str(tmp_path / "b"), RcloneOptions())
    source = dbstash.CommandSource(["head", "-c", "20000000", "/dev/urandom"])
    result = anyio.run(dbstash.Pipeline(source, dbstash.FanOut([a, b])).run, "x.bin")
    assert result.fast_path
    data = (tmp_path / "a" / "x.bin").read_bytes()
    assert data == (tmp_path / "b" / "x.bin").read_bytes() and hashlib.sha256(data).hexdigest() == result.sha256


# -- the read side: list, restore, verify and prune over several destinations --------------------------
def _fresh_db(pg: PgServer) -> str:
    name = f"fan_{uuid.uuid4().hex[:8]}"
    pg.createdb(name)
    return name


def test_list_merges_destinations_and_says_where_a_proven_copy_is(
    pg: PgServer, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    one, two = two_s3
    folder = f"fan-list-{uuid.uuid4().hex[:6]}"
    local = tmp_path / "local"
    remotes = [one.remote(folder), two.remote(folder), str(local)]
    settings = dbstash.Settings.create(pg.uri(), remote=remotes, rclone=RcloneOptions(config_text=config_of(one, two)))
    first = dbstash.backup(settings=settings)
    time.sleep(1.1)  # a new name (the template has seconds)
    second = dbstash.backup(settings=settings)
    (folder_of(two, folder) / second.name).unlink()  # lost on the second server
    time.sleep(1.2)  # serve s3's directory cache
    listed = {i.name: i for i in dbstash.list_backups(settings)}
    assert set(listed) == {first.name, second.name}, "one entry per backup"
    assert listed[first.name].copies == tuple(remotes)
    assert listed[second.name].copies == (remotes[0], remotes[2])
    done = run_cli({**env_for(remotes, two_s3, DB_URI=pg.uri()), "LOG_FORMAT": "text"}, "list")
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if second.name in x)
    assert f"copies 2/3 (none on {remotes[1]})" in line


def test_restore_reads_the_second_destination_when_the_first_is_down(
    pg: PgServer, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    one, two = two_s3
    folder = f"fan-down-{uuid.uuid4().hex[:6]}"
    pg.psql("CREATE TABLE IF NOT EXISTS fan_rows AS SELECT g FROM generate_series(1, 500) g")
    settings = dbstash.Settings.create(
        pg.uri(),
        remote=[one.remote(folder), two.remote(folder)],
        rclone=RcloneOptions(config_text=config_of(one, two), extra_args=FAST_FAILING),
    )
    backup = dbstash.backup(settings=settings)
    one.proc.kill()
    one.proc.wait()
    target = _fresh_db(pg)
    result = dbstash.restore(settings, target=pg.uri(database=target))
    assert result.remote == two.remote(folder) and result.name == backup.name and result.checksum_verified
    assert pg.psql("SELECT count(*) FROM fan_rows", database=target) == "500"


def test_a_tampered_copy_on_the_first_destination_is_refused_and_the_second_restored(
    pg: PgServer, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    one, two = two_s3
    folder = f"fan-tamper-{uuid.uuid4().hex[:6]}"
    pg.psql("CREATE TABLE IF NOT EXISTS fan_rows AS SELECT g FROM generate_series(1, 500) g")
    settings = dbstash.Settings.create(
        pg.uri(), remote=[one.remote(folder), two.remote(folder)], rclone=RcloneOptions(config_text=config_of(one, two))
    )
    backup = dbstash.backup(settings=settings)
    stored = folder_of(one, folder) / backup.name
    data = bytearray(stored.read_bytes())
    at = data.index(b"COPY public.fan_rows")
    data[at + 30 : at + 34] = b"6666"  # the same size, other rows: only the checksum can tell
    stored.write_bytes(bytes(data))
    target = _fresh_db(pg)
    result = dbstash.restore(settings, target=pg.uri(database=target))
    assert result.remote == two.remote(folder)
    assert pg.psql("SELECT count(*), max(g) FROM fan_rows", database=target) == "500|500"


def test_verify_drills_one_copy_and_checks_every_other(
    pg: PgServer, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    one, two = two_s3
    folder = f"fan-verify-{uuid.uuid4().hex[:6]}"
    local = tmp_path / "local"
    remotes = [one.remote(folder), two.remote(folder), str(local)]
    settings = dbstash.Settings.create(pg.uri(), remote=remotes, rclone=RcloneOptions(config_text=config_of(one, two)))
    backup = dbstash.backup(settings=settings)
    good = dbstash.verify(settings, target=pg.uri(database=_fresh_db(pg)))
    assert good.ok and good.restore.remote == remotes[0]
    assert [r for r, problem in good.copies if problem is None] == remotes[1:]
    copy = local / backup.name
    copy.write_bytes(copy.read_bytes()[:-10] + b"0123456789")  # the local copy rots
    bad = dbstash.verify(settings, target=pg.uri(database=_fresh_db(pg)))
    assert not bad.ok
    assert dict(bad.copies)[remotes[1]] is None and "corrupted" in (dict(bad.copies)[remotes[2]] or "")
    done = run_cli(
        env_for(remotes, two_s3, DB_URI=pg.uri(), VERIFY_TARGET_URI=pg.uri(database=_fresh_db(pg))), "verify", "--json"
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["ok"] is False


def test_retention_and_prune_run_on_every_destination(
    pg: PgServer, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    one, two = two_s3
    folder = f"fan-ret-{uuid.uuid4().hex[:6]}"
    local = tmp_path / "local"
    remotes = [one.remote(folder), str(local)]
    settings = dbstash.Settings.create(
        pg.uri(), remote=remotes, rclone=RcloneOptions(config_text=config_of(one, two)), retention_max_files=2
    )
    names = []
    for _ in range(3):
        names.append(dbstash.backup(settings=settings).name)
        time.sleep(1.1)
    time.sleep(1.2)  # serve s3's directory cache
    assert [p.name for p in backups_in(folder_of(one, folder))] == names[1:]
    assert [p.name for p in backups_in(local)] == names[1:]
    pruned = dbstash.prune(
        dbstash.Settings.create(pg.uri(), remote=remotes, rclone=settings.rclone, retention_max_files=1)
    )
    assert [c.remote for c in pruned.copies] == remotes
    assert all(c.deleted == (names[1],) for c in pruned.copies)
    assert [p.name for p in backups_in(local)] == names[2:]


def test_modes_compression_encryption_and_many_databases_with_two_destinations(pg: PgServer, tmp_path: Path) -> None:
    """Tar mode with zstd and age (encrypted once: the same ciphertext everywhere), directory mode, and a
    job of several databases, each into two local folders: identical copies, each one restorable."""
    key = tmp_path / "age.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    key.chmod(0o600)
    recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True).stdout
    a, b = tmp_path / "a", tmp_path / "b"
    pg.psql("CREATE TABLE IF NOT EXISTS fan_rows AS SELECT g FROM generate_series(1, 500) g")
    cases = {
        "tar": {"mode": "tar", "compress": "zstd", "encrypt_to": recipient.strip(), "identity_file": str(key)},
        "directory": {"mode": "directory"},
    }
    for label, extra in cases.items():
        remotes = [str(a / label), str(b / label)]
        settings = dbstash.Settings.create(pg.uri(), remote=remotes, temp_dir=str(tmp_path / "work"), **extra)  # type: ignore[arg-type]
        result = dbstash.backup(settings=settings)
        assert [c.committed for c in result.copies] == [True, True], label
        one, two = (Path(r) / result.name for r in remotes)
        if label == "directory":
            assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
        else:
            assert one.read_bytes() == two.read_bytes(), "encrypted once, the same ciphertext on both"
            assert result.name.endswith(".tar.zst.age")
        target = _fresh_db(pg)
        restored = dbstash.restore(settings, target=pg.uri(database=target))
        assert restored.remote == remotes[0], label
        assert pg.psql("SELECT count(*) FROM fan_rows", database=target) == "500", label
    server = f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{pg.port}/"
    remotes = [str(a / "many"), str(b / "many")]
    run = dbstash.backup_many(server, remote=remotes, databases=["app"], include_globals=False)
    assert run.ok
    (outcome,) = run.outcomes
    assert outcome.result is not None and [c.committed for c in outcome.result.copies] == [True, True]
    assert (Path(remotes[0]) / outcome.result.name).read_bytes() == (
        Path(remotes[1]) / outcome.result.name
    ).read_bytes()


def test_the_rc_transport_takes_part(pg: PgServer, s3: S3Server, rcd: RcDaemon) -> None:
    """With RCLONE_RC_URL every destination goes through the one rcd (two folders of the test S3 here)."""
    folder = f"fan-rc-{uuid.uuid4().hex[:6]}"
    remotes = [s3.remote(folder + "-a"), s3.remote(folder + "-b")]
    settings = dbstash.Settings.create(pg.uri(), remote=remotes, rc=rcd.options())
    result = dbstash.backup(settings=settings)
    assert [c.committed for c in result.copies] == [True, True]
    time.sleep(1.2)  # serve s3's directory cache
    one, two = (folder_of(s3, f) / result.name for f in (folder + "-a", folder + "-b"))
    assert one.read_bytes() == two.read_bytes()
    check_against_manifest(two)
    assert [i.copies for i in dbstash.list_backups(settings)] == [tuple(remotes)]


def test_sigterm_mid_stream_aborts_every_destination_within_docker_grace(
    pg: PgServer, big: str, two_s3: tuple[S3Server, S3Server], tmp_path: Path
) -> None:
    one, two = two_s3
    folder = f"fan-term-{uuid.uuid4().hex[:6]}"
    local = tmp_path / folder
    env = env_for([one.remote(folder), two.remote(folder), str(local)], two_s3, DB_URI=pg.uri())
    env["RCLONE_EXTRA_ARGS"] = "--bwlimit 4M"
    proc = subprocess.Popen([*DBSTASH, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not children_named("pg_dump", proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # a few megabytes in flight to each destination
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10, "within Docker's stop grace"
    assert proc.returncode == 1 and "SIGTERM" in err
    assert not rclones_for(folder), "no rclone outlives the run"
    time.sleep(1.2)  # serve s3's directory cache
    for path in (folder_of(one, folder), folder_of(two, folder), local):
        assert backups_in(path) == [], path


def test_a_run_of_several_databases_restores_and_verifies_with_the_first_destination_down(
    pg: PgServer, own_pg: PgServer, two_s3: tuple[S3Server, S3Server]
) -> None:
    one, two = two_s3
    folder = f"fan-many-{uuid.uuid4().hex[:6]}"
    pg.psql("CREATE TABLE IF NOT EXISTS fan_rows AS SELECT g FROM generate_series(1, 500) g")
    server = f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{pg.port}/"
    settings = dbstash.Settings.create(
        server,
        remote=[one.remote(folder), two.remote(folder)],
        databases=["app"],
        include_globals=False,
        rclone=RcloneOptions(config_text=config_of(one, two), extra_args=FAST_FAILING),
    )
    assert dbstash.backup_many(settings=settings).ok
    one.proc.kill()
    one.proc.wait()
    into = f"postgresql://{own_pg.user}:{own_pg.password}@127.0.0.1:{own_pg.port}/"
    restored = dbstash.restore_many(settings, target=into, force=True)
    assert restored.ok and [r.remote for r in restored.results] == [two.remote(folder)]
    assert own_pg.psql("SELECT count(*) FROM fan_rows") == "500"
    drilled = dbstash.verify_many(settings, target=pg.uri(database=_fresh_db(pg)))
    (result,) = drilled.results
    assert result.restore.remote == two.remote(folder) and result.counts["public.fan_rows"] == 500
    (down,) = result.copies  # the first destination's copy could not be checked: the drill says so
    assert down[0] == one.remote(folder) and down[1]
    assert not drilled.ok

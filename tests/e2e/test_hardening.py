"""Issue 14 through the entrypoint, as the container runs it: races, secrets, dead peers, bounded exits.

Each test failed on 0.2.0; the comments name the issue's items.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dbstash.jobs.manifest import MANIFEST_SUFFIX, Manifest, manifest_name
from tests.support.dbservers import RedisServer
from tests.support.servers import Blackhole, PgServer, S3Server, children_named, free_port

pytestmark = pytest.mark.e2e
DBSTASH = [sys.executable, "-m", "dbstash_cli"]


def _env(env: dict[str, str]) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}


def run(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(DBSTASH + args, env=_env(env), capture_output=True, text=True, timeout=timeout)


def logs(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def s3_env(s3: S3Server, folder: str) -> dict[str, str]:
    return {"RCLONE_CONFIG": base64.b64encode(s3.config.encode()).decode(), "RCLONE_REMOTE": s3.remote(folder)}


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def dead_s3_env(port: int, folder: str = "x") -> dict[str, str]:
    conf = (
        f"[dead]\ntype = s3\nprovider = Other\nendpoint = http://127.0.0.1:{port}\naccess_key_id = AKID\n"
        "secret_access_key = dead-remote-secret\n"
    )
    return {"RCLONE_CONFIG": base64.b64encode(conf.encode()).decode(), "RCLONE_REMOTE": f"dead:bucket/{folder}"}


# -- 1. two runs of one job in the same second ---------------------------------------------------------
def _at_the_next_second() -> None:
    time.sleep(1 - (time.time() % 1) + 0.02)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_runs_in_the_same_second_both_keep_a_restorable_backup(
    sqlite_db: Path, tmp_path: Path, s3: S3Server, where: str
) -> None:
    folder = f"race-{os.urandom(3).hex()}"
    if where == "local":
        remote_env = {"RCLONE_REMOTE": str(tmp_path / "remote")}
        root = tmp_path / "remote"
    else:
        remote_env = s3_env(s3, folder)
        root = Path(s3.root) / s3.bucket / folder  # the S3 server's own files: read directly
    rounds = 3
    reported: list[tuple[str, str]] = []
    for i in range(rounds):
        procs = []
        _at_the_next_second()  # both render their name from the same second, as two containers would
        for side in "ab":
            env = _env(
                {
                    "DB_URI": f"sqlite:///{sqlite_db}",
                    "BACKUP_SCHEDULE": "once",
                    "TMPDIR": str(tmp_path),  # separate lock files: two containers share no lock
                    "BACKUP_LOCK_FILE": str(tmp_path / f"{side}{i}.lock"),
                    **remote_env,
                }
            )
            procs.append(subprocess.Popen([*DBSTASH, "run"], env=env, stderr=subprocess.PIPE, text=True))
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            done = next(r for r in logs(err) if r["message"] == "backup complete")
            reported.append((str(done["remote_path"]).rsplit("/", 1)[1], str(done["sha256"])))
    names = s3.files(folder) if where == "s3" else sorted(os.listdir(root))
    data = [n for n in names if not n.endswith(MANIFEST_SUFFIX)]
    assert len(data) == 2 * rounds and len(names) == 4 * rounds, names
    assert sorted(n for n, _ in reported) == sorted(data), "each run's reported backup is on the remote"
    for name, sha in reported:
        body = (root / name).read_bytes()
        m = Manifest.from_json((root / manifest_name(name)).read_bytes())
        assert hashlib.sha256(body).hexdigest() == sha == m.sha256 and m.name == name


# -- 5. secrets in malformed URIs ----------------------------------------------------------------------
@pytest.mark.parametrize("password", ["se/cretSECRET", "p@ss:w/rd%20#?&SECRET"])
def test_a_malformed_uri_never_shows_its_password(tmp_path: Path, password: str) -> None:
    uri = f"postgresql://postgres:{password}@127.0.0.1:notaport/x"
    for args in (["run"], ["backup", "--json"]):
        proc = run(args, {"DB_URI": uri, "RCLONE_REMOTE": str(tmp_path / "r"), "BACKUP_SCHEDULE": "once"})
        assert proc.returncode == 2, proc.stderr
        out = proc.stdout + proc.stderr
        assert "DB_URI" in out and "SECRET" not in out and "cret" not in out, out


# -- 6. children never see dbstash's, the notifiers' or rclone's secrets -----------------------------------
SECRETS = {
    "DB_PASSWORD": "db-pass-SECRET-1",
    "NOTIFY_SMTP_PASSWORD": "smtp-SECRET-2",
    "NOTIFY_WEBHOOK_URL": "http://127.0.0.1:9/hooks/SECRET-3-token",
    "NOTIFY_PING_URL": "http://127.0.0.1:9/ping/SECRET-4-uuid",
    "RCLONE_CONFIG_OTHER_SECRET_ACCESS_KEY": "rclone-SECRET-5",
}


def _fake_tool(folder: Path, name: str, out: Path, stdout: str) -> None:
    """An executable called *name* that records the environment it was given, then prints *stdout*."""
    script = folder / name
    script.write_text(f"#!/bin/sh\nenv >> {out}\necho '-- tool' >> {out}\nprintf '{stdout}'\n")
    script.chmod(0o755)


def test_hooks_and_dump_tools_get_no_secrets(sqlite_db: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    seen = tmp_path / "seen-by-children"
    # the sqlite3 dump tool (also asked for --version) is a script recording what it was given
    _fake_tool(bindir, "sqlite3", seen, "BEGIN TRANSACTION;\\nCOMMIT;\\n")
    env = {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "DB_URI": f"sqlite:///{sqlite_db}",
        "RCLONE_REMOTE": str(tmp_path / "r"),
        "BACKUP_SCHEDULE": "once",
        "NOTIFY_ON": "failure",
        "NOTIFY_EMAIL_TO": "ops@example.test",
        "NOTIFY_SMTP_URL": "smtp://dbstash@127.0.0.1:9",
        "HOOK_PRE_BACKUP": f"env >> {seen}; echo '-- hook' >> {seen}",
        "HOOK_POST_BACKUP": f"env >> {seen}; echo '-- hook' >> {seen}",
        **SECRETS,
    }
    proc = run(["run"], env)
    assert proc.returncode == 0, proc.stderr
    text = seen.read_text()
    assert text.count("\n-- hook\n") == 2 and text.count("\n-- tool\n") >= 1, "both hooks and the dump ran"
    assert "DBSTASH_STATUS=success" in text and "DBSTASH_FILE=" in text
    for name, value in SECRETS.items():
        assert value not in text and f"{name}=" not in text, name
    assert "DB_URI=" not in text and "NOTIFY_SMTP_URL" not in text


# -- 8. dead peers fail a run within a minute, with the default settings ------------------------------------
def test_a_remote_that_never_answers_fails_the_run_within_a_minute(
    pg: PgServer, tmp_path: Path, blackhole: Blackhole
) -> None:
    pg.psql("CREATE TABLE IF NOT EXISTS dead_remote(id int); INSERT INTO dead_remote VALUES (1)")
    t0 = time.monotonic()
    proc = run(["run"], {"DB_URI": pg.uri(), "BACKUP_SCHEDULE": "once", **dead_s3_env(blackhole.port)})
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    assert elapsed < 60, f"took {elapsed:.0f}s"
    assert "dead-remote-secret" not in proc.stderr


def test_a_frozen_redis_fails_the_run_within_a_minute(tmp_path: Path) -> None:
    server = RedisServer.start()
    assert server.proc is not None
    try:
        server.cli("SET", "k", "v")
        os.kill(server.proc.pid, signal.SIGSTOP)  # accepts connections (the kernel does), answers nothing
        t0 = time.monotonic()
        proc = run(["run"], {"DB_URI": server.uri(), "RCLONE_REMOTE": str(tmp_path / "r"), "BACKUP_SCHEDULE": "once"})
        elapsed = time.monotonic() - t0
        assert proc.returncode == 1, proc.stderr
        assert elapsed < 60, f"took {elapsed:.0f}s"
        assert "produced no data" in proc.stderr
        assert not (tmp_path / "r").exists() or not [
            n for n in os.listdir(tmp_path / "r") if not n.endswith(".dbstash-partial")
        ]
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.destroy()


# -- 9. a timeout or a SIGTERM ends the run promptly even when the remote is dead --------------------------
@pytest.fixture(scope="module")
def slow_table(pg: PgServer) -> str:
    pg.psql(
        "CREATE TABLE IF NOT EXISTS hard_big AS SELECT g, repeat(md5(g::text), 9) p FROM generate_series(1, 150000) g"
    )
    return "hard_big"


def test_backup_timeout_is_kept_when_the_remote_is_dead(
    pg: PgServer, slow_table: str, tmp_path: Path, blackhole: Blackhole
) -> None:
    t0 = time.monotonic()
    proc = run(
        ["run"],
        {"DB_URI": pg.uri(), "BACKUP_SCHEDULE": "once", "BACKUP_TIMEOUT": "5s", **dead_s3_env(blackhole.port)},
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1 and "timeout of 5s" in proc.stderr, proc.stderr
    assert elapsed < 14, f"BACKUP_TIMEOUT=5s ended after {elapsed:.0f}s"


@pytest.mark.parametrize("notify", [False, True])
def test_sigterm_is_honoured_within_docker_stop_grace_when_the_remote_is_dead(
    pg: PgServer, slow_table: str, tmp_path: Path, blackhole: Blackhole, notify: bool
) -> None:
    extra = {"DB_URI": pg.uri(), "BACKUP_SCHEDULE": "once", **dead_s3_env(blackhole.port)}
    if notify:  # a webhook that never answers, and a post-hook: both must fit in what is left of the grace
        extra.update(
            NOTIFY_WEBHOOK_URL=f"http://127.0.0.1:{blackhole.port}/hook",
            NOTIFY_ON="always",
            HOOK_POST_BACKUP="sleep 30",
        )
    env = _env(extra)
    proc = subprocess.Popen([*DBSTASH, "run"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not children_named("pg_dump", proc.pid, arg="--no-password") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2)  # rclone is stuck on the dead remote, the relay is blocked
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, err
    assert elapsed < 10, f"SIGTERM took {elapsed:.1f}s (Docker kills after 10s)"


# -- 10, 11, 12. bad input exits 2 naming the variable, never a traceback -----------------------------------
def _bad(tmp_path: Path, sqlite_db: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        ["run"],
        {"DB_URI": f"sqlite:///{sqlite_db}", "RCLONE_REMOTE": str(tmp_path / "r"), "BACKUP_SCHEDULE": "once", **extra},
    )


def _assert_exit_2_naming(proc: subprocess.CompletedProcess[str], variable: str, tmp_path: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    named = lines[0].removeprefix("dbstash: configuration error: ")
    # the entrypoint names the variable; a CLI command the variable and its flag: "X (--x):"
    assert len(lines) == 1 and named.startswith((f"{variable}:", f"{variable} (--")) and "expected" in named, (
        proc.stderr
    )
    assert not (tmp_path / "r").exists(), "nothing may be uploaded"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BACKUP_SCHEDULE", "0 0 30 2 *"),
        ("VERIFY_SCHEDULE", "0 0 30 2 *"),
        ("RETENTION_MAX_DAYS", "1e308"),
        ("RETENTION_MAX_DAYS", "800000"),
        ("BACKUP_COMPRESS", "zstd:"),
        ("BACKUP_EXTENSION", ".sql.dbstash-manifest.json"),
        ("BACKUP_EXTENSION", ".dbstash-partial"),
        ("HEALTH_ADDR", "999.1.1.1"),
        ("BACKUP_STALL_TIMEOUT", "soon"),
    ],
)
def test_bad_values_exit_2_naming_the_variable(sqlite_db: Path, tmp_path: Path, variable: str, value: str) -> None:
    extra = {variable: value}
    if variable == "VERIFY_SCHEDULE":
        extra["VERIFY_TARGET_URI"] = str(tmp_path / "scratch.db")
    _assert_exit_2_naming(_bad(tmp_path, sqlite_db, **extra), variable, tmp_path)


def test_health_addr_not_on_this_host_is_named(sqlite_db: Path, tmp_path: Path) -> None:
    # a documentation address (TEST-NET-1): binding fails locally, nothing is sent anywhere
    proc = _bad(tmp_path, sqlite_db, BACKUP_SCHEDULE="0 2 * * *", HEALTH_ADDR="192.0.2.1", HEALTH_PORT=str(free_port()))
    assert proc.returncode == 2, proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert (
        last.removeprefix("dbstash: configuration error: ").startswith("HEALTH_ADDR:")
        and "HEALTH_PORT" not in last
        and "Traceback" not in proc.stderr
    )


def test_a_password_file_that_is_not_text(sqlite_db: Path, tmp_path: Path, pg: PgServer) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(b"\xff\xfe\x00binary")
    proc = run(
        ["run"],
        {
            "DB_URI": pg.uri(password=False),
            "DB_PASSWORD_FILE": str(secret),
            "RCLONE_REMOTE": str(tmp_path / "r"),
            "BACKUP_SCHEDULE": "once",
        },
    )
    _assert_exit_2_naming(proc, "DB_PASSWORD_FILE", tmp_path)


def test_prune_with_a_huge_max_days_exits_2(sqlite_db: Path, tmp_path: Path) -> None:
    proc = run(
        ["prune"],
        {"DB_URI": f"sqlite:///{sqlite_db}", "RCLONE_REMOTE": str(tmp_path / "r"), "RETENTION_MAX_DAYS": "800000"},
    )
    _assert_exit_2_naming(proc, "RETENTION_MAX_DAYS", tmp_path)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DB_URI": "postgresql://app:pw@127.0.0.1:99999/app"}, "DB_URI"),
        ({"DB_URI": "postgresql://app:pw@127.0.0.1:0/app"}, "DB_URI"),
        ({"DB_ENGINE": "pg", "DB_HOST": "127.0.0.1", "DB_NAME": "app", "DB_PORT": "0"}, "DB_PORT"),
        ({"DB_ENGINE": "pg", "DB_HOST": "127.0.0.1", "DB_NAME": "a/b"}, "DB_NAME"),
    ],
)
def test_bad_connection_settings_exit_2_before_any_dump(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    proc = run(["run"], {"RCLONE_REMOTE": str(tmp_path / "r"), "BACKUP_SCHEDULE": "once", **env})
    _assert_exit_2_naming(proc, variable, tmp_path)


def test_an_undefined_remote_exits_2_before_the_dump(pg: PgServer, slow_table: str, tmp_path: Path) -> None:
    t0 = time.monotonic()
    for args in (["run"], ["backup"]):
        proc = run(args, {"DB_URI": pg.uri(), "RCLONE_REMOTE": "nosuch:bucket/x", "BACKUP_SCHEDULE": "once"})
        assert proc.returncode == 2, proc.stderr
        assert "RCLONE_REMOTE" in proc.stderr and "nosuch" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 20, "found before dumping the 45 MB table"


def test_healthz_shows_the_kind_of_failure_but_no_host_or_user(tmp_path: Path) -> None:
    port = free_port()
    env = _env(
        {
            "DB_URI": f"postgresql://secretuser@127.0.0.1:{free_port()}/app",
            "RCLONE_REMOTE": str(tmp_path / "r"),
            "BACKUP_SCHEDULE": "* * * * * */2",
            "HEALTH_PORT": str(port),
            "HEALTH_ADDR": "127.0.0.1",
            "BACKUP_LOCK_FILE": str(tmp_path / "lock"),
            "PGCONNECT_TIMEOUT": "2",
        }
    )
    proc = subprocess.Popen([*DBSTASH, "run"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            except requests.RequestException:
                body = {}
            if body.get("status") == "failing":
                break
            time.sleep(0.5)
        assert body.get("status") == "failing", body
        text = json.dumps(body)
        assert "127.0.0.1" not in text and "secretuser" not in text
        assert "DumpFailed" in text or "ToolVersionMismatch" in text, text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)

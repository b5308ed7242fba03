"""The entrypoint as the container runs it: ``dbstash run`` / ``dbstash backup`` as subprocesses, env only."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dbstash.jobs.manifest import MANIFEST_SUFFIX
from dbstash.jobs.naming import PARTIAL_MARK
from tests.support.servers import PgServer, S3Server, all_cmdlines, children_named, cmdline, uploads_of

pytestmark = pytest.mark.e2e
DBSTASH = [sys.executable, "-m", "dbstash_cli"]


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
    return subprocess.run(DBSTASH + args, env=full, capture_output=True, text=True, timeout=timeout)


def json_logs(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_run_once_sqlite_json_logs(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "out"
    proc = run(["run"], {"DB_URI": f"sqlite:///{sqlite_db}", "RCLONE_REMOTE": str(remote), "BACKUP_SCHEDULE": "once"})
    assert proc.returncode == 0, proc.stderr
    files, manifests = sorted(os.listdir(remote)), [n for n in os.listdir(remote) if n.endswith(MANIFEST_SUFFIX)]
    assert len(files) == 2 and files[0].endswith(".sql") and manifests == [files[0] + MANIFEST_SUFFIX]
    logs = json_logs(proc.stderr)
    assert logs and all({"time", "level", "message", "engine", "database", "backup_id"} <= set(r) for r in logs)
    final = next(r for r in logs if r["message"] == "backup complete")
    assert final["size"] == (remote / files[0]).stat().st_size
    assert final["remote_path"] == f"{remote}/{files[0]}" and len(str(final["sha256"])) == 64
    assert isinstance(final["duration"], float)


def test_text_logs(sqlite_db: Path, tmp_path: Path) -> None:
    proc = run(
        ["run"],
        {
            "DB_URI": f"sqlite:///{sqlite_db}",
            "RCLONE_REMOTE": str(tmp_path / "o"),
            "BACKUP_SCHEDULE": "once",
            "LOG_FORMAT": "text",
        },
    )
    assert proc.returncode == 0
    assert "INFO backup complete" in proc.stderr and not proc.stderr.lstrip().startswith("{")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETENTION_MAX_FILES", "lots"),
        ("BACKUP_NAME_TEMPLATE", "{db}/../x"),
        ("TZ", "Nowhere/City"),
        ("DB_URI", "postgresql://app:hunter2-secret@db:notaport/app"),
        ("BACKUP_TIMEOUT", "1 week"),
    ],
)
def test_bad_config_exits_2_naming_the_variable_and_touches_nothing(
    sqlite_db: Path, tmp_path: Path, variable: str, value: str
) -> None:
    remote = tmp_path / "out"
    env = {"DB_URI": f"sqlite:///{sqlite_db}", "RCLONE_REMOTE": str(remote), "BACKUP_SCHEDULE": "once", variable: value}
    proc = run(["run"], env)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and variable in lines[0] and "expected" in lines[0]
    assert "hunter2-secret" not in proc.stderr + proc.stdout
    assert not remote.exists()


def test_cli_backup_flags_and_json(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "cli"
    proc = run(
        [
            "backup",
            "--uri",
            f"sqlite:///{sqlite_db}",
            "--remote",
            str(remote),
            "--json",
            "--name-template",
            "{engine}-{db}-{uuid}",
        ],
        {},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True and result["name"].startswith("sqlite-app-")
    assert (remote / result["name"]).stat().st_size == result["size"]


def test_cli_failure_json_and_exit_1(tmp_path: Path, pg: PgServer) -> None:
    proc = run(
        ["backup", "--json"],
        {"DB_URI": pg.uri(password=False), "DB_PASSWORD": "wrong-password-xyz", "RCLONE_REMOTE": str(tmp_path / "x")},
    )
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["ok"] is False and out["error_type"] == "DumpFailed"
    assert "wrong-password-xyz" not in proc.stdout + proc.stderr


def test_version_and_module_entry() -> None:
    proc = run(["--version"], {})
    assert proc.returncode == 0 and "dbstash, version" in proc.stdout


def test_pg_to_s3_with_base64_rclone_config_and_no_secret_anywhere(pg: PgServer, s3: S3Server) -> None:
    """Scan every process's argv while the run is in flight; check logs and results for secrets too."""
    pg.psql(
        "CREATE TABLE IF NOT EXISTS e2e_big AS SELECT g, repeat(md5(g::text), 8) p FROM generate_series(1, 60000) g"
    )
    folder = "e2e-pg"
    env = {
        "DB_URI": pg.uri(),
        "RCLONE_REMOTE": s3.remote(folder),
        "BACKUP_SCHEDULE": "once",
        "LOG_LEVEL": "debug",
        "RCLONE_CONFIG": base64.b64encode(s3.config.encode()).decode(),
        "RCLONE_EXTRA_ARGS": "--bwlimit 8M",
    }
    secrets = [pg.password, s3.secret_key]
    leaks: list[str] = []
    stop = threading.Event()

    def scan() -> None:
        while not stop.is_set():
            for pid, cmd in all_cmdlines():
                if any(s in cmd for s in secrets):
                    leaks.append(f"{pid}: {cmd}")
            time.sleep(0.05)

    scanner = threading.Thread(target=scan)
    scanner.start()
    try:
        proc = run(["run"], env)
    finally:
        stop.set()
        scanner.join()
    assert proc.returncode == 0, proc.stderr
    assert leaks == []
    assert not any(s in proc.stderr + proc.stdout for s in secrets)
    assert any("pg_dump" in str(r.get("message")) for r in json_logs(proc.stderr))  # debug logs were on
    assert len(s3.files(folder)) == 2  # the backup and its manifest


def _slow_run(pg: PgServer, remote: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    pg.psql(
        "CREATE TABLE IF NOT EXISTS e2e_big AS SELECT g, repeat(md5(g::text), 8) p FROM generate_series(1, 60000) g"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DB_URI": pg.uri(),
        "RCLONE_REMOTE": remote,
        "BACKUP_SCHEDULE": "once",
        "RCLONE_EXTRA_ARGS": "--bwlimit 2M --buffer-size 0",  # no 16 MiB read-ahead: pg_dump stays busy
        **(extra_env or {}),
    }
    proc = subprocess.Popen([*DBSTASH, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not children_named("pg_dump", proc.pid, arg="--no-password") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # a few megabytes in flight
    return proc


def test_sigterm_mid_run_aborts_and_exits_nonzero(pg: PgServer, tmp_path: Path) -> None:
    remote = tmp_path / "r"
    proc = _slow_run(pg, str(remote))
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 15
    assert proc.returncode == 1
    assert "SIGTERM" in err
    assert not remote.exists() or os.listdir(remote) == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_sigkill_of_dbstash_leaves_only_a_partial_name(pg: PgServer, s3: S3Server, tmp_path: Path, where: str) -> None:
    if where == "local":
        remote = tmp_path / "r"
        proc = _slow_run(pg, str(remote))

        def names() -> list[str]:
            return os.listdir(remote) if remote.exists() else []
    else:
        folder = f"killed-{os.getpid()}-{time.monotonic_ns()}"
        config = base64.b64encode(s3.config.encode()).decode()
        proc = _slow_run(pg, s3.remote(folder), {"RCLONE_CONFIG": config})

        def names() -> list[str]:
            return s3.files(folder)

    # the backup's rclone (the manifest's, started in advance and idle, is left out: its guardian stops it)
    children = children_named("pg_dump", proc.pid, arg="--no-password") + uploads_of(proc.pid)
    assert len(children) == 2, (children, [cmdline(c) for c in children])
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 60  # orphans end by themselves: pg_dump on EPIPE, rclone on EOF
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(c) for c in children)
    # rclone saw end of input when dbstash died and stored what it had: under the partial name only
    left = names()
    assert len(left) == 1, left
    assert left[0].startswith("app-") and left[0].endswith(PARTIAL_MARK)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(
    ("uri", "extra", "flag"),
    [
        ("mysql://app:pw@127.0.0.1:1/shop", "--tab=/var/lib/mysql-files", "--tab=/var/lib/mysql-files"),
        ("mongodb://app:pw@127.0.0.1:1/shop", "--out /tmp/dump", "--out"),
        ("postgresql://app:pw@127.0.0.1:1/app", "-Fd -f /tmp/d", "-Fd -f"),
    ],
)
def test_conflicting_dump_flags_warn_at_start_up_and_the_run_proceeds(
    tmp_path: Path, uri: str, extra: str, flag: str
) -> None:
    """Spec: a warning naming the flag at start-up; not a configuration error (the dry run still exits 0)."""
    proc = run(
        ["run"],
        {"DB_URI": uri, "RCLONE_REMOTE": str(tmp_path / "r"), "DUMP_EXTRA_ARGS": extra, "DRY_RUN": "true"},
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [r for r in json_logs(proc.stderr) if r.get("level") == "WARNING"]
    assert any(flag in str(r["message"]) and "DUMP_EXTRA_ARGS" in str(r["message"]) for r in warnings), warnings
    assert "pw@" not in proc.stderr + proc.stdout

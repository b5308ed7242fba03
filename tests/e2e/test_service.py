"""Service mode with real processes and real time: schedule, overlap, locks, signals, dry run, health."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from dbstash.jobs.manifest import MANIFEST_SUFFIX
from tests.support.servers import PgServer, children_named, free_port, uploads_of

pytestmark = pytest.mark.e2e
DBSTASH = [sys.executable, "-m", "dbstash_cli"]


class Running:
    """A ``dbstash`` process whose JSON log records are collected as they arrive."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
        self.proc = subprocess.Popen(
            [*DBSTASH, *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.records: list[dict[str, object]] = []
        self._new: queue.Queue[dict[str, object]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.startswith("{"):
                rec = json.loads(line)
                self.records.append(rec)
                self._new.put(rec)

    def wait_for(self, text: str, timeout: float = 30) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                rec = self._new.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self._new.empty():
                    break
                continue
            if text in str(rec.get("message")):
                return rec
        raise AssertionError(f"no log record with {text!r}; got {[r.get('message') for r in self.records]}")

    def messages(self) -> list[str]:
        return [str(r.get("message")) for r in self.records]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code


@pytest.fixture
def lockfile(tmp_path: Path) -> str:
    return str(tmp_path / "dbstash.jobs.lock")


def sqlite_env(sqlite_db: Path, remote: Path, lockfile: str, **extra: str) -> dict[str, str]:
    return {
        "DB_URI": f"sqlite:///{sqlite_db}",
        "RCLONE_REMOTE": str(remote),
        "BACKUP_LOCK_FILE": lockfile,
        "HEALTH_PORT": "0",
        "BACKUP_NAME_TEMPLATE": "{db}-{uuid}",
        **extra,
    }


def slow_pg_env(pg: PgServer, remote: Path, lockfile: str, **extra: str) -> dict[str, str]:
    pg.psql(
        "CREATE TABLE IF NOT EXISTS svc_big AS SELECT g, repeat(md5(g::text), 8) p FROM generate_series(1, 60000) g"
    )
    return {
        "DB_URI": pg.uri(),
        "RCLONE_REMOTE": str(remote),
        "BACKUP_LOCK_FILE": lockfile,
        "HEALTH_PORT": "0",
        "RCLONE_EXTRA_ARGS": "--bwlimit 2M --buffer-size 0",
        "BACKUP_NAME_TEMPLATE": "{db}-{uuid}",
        **extra,
    }


def test_schedule_runs_logs_next_time_and_sigterm_between_runs_exits_0(
    sqlite_db: Path, tmp_path: Path, lockfile: str
) -> None:
    remote = tmp_path / "r"
    svc = Running(["run"], sqlite_env(sqlite_db, remote, lockfile, BACKUP_SCHEDULE="* * * * * */3"))
    svc.wait_for("next backup at")
    svc.wait_for("backup complete")
    svc.wait_for("next backup at")  # logged after each run
    svc.wait_for("backup complete")
    time.sleep(0.3)  # between runs now: the next tick is ~2.5 s away
    t0 = time.monotonic()
    assert svc.stop() == 0
    assert time.monotonic() - t0 < 2
    assert len(os.listdir(remote)) >= 2
    assert "received SIGTERM between runs: exiting" in svc.messages()


def test_a_failed_run_does_not_stop_the_schedule(tmp_path: Path, lockfile: str) -> None:
    missing = tmp_path / "gone.db"
    svc = Running(["run"], sqlite_env(missing, tmp_path / "r", lockfile, BACKUP_SCHEDULE="* * * * * */2"))
    svc.wait_for("backup failed")
    svc.wait_for("next backup at")
    svc.wait_for("backup failed")
    assert svc.stop() == 0


def test_sigterm_during_a_scheduled_run_aborts_it_and_exits_1(pg: PgServer, tmp_path: Path, lockfile: str) -> None:
    remote = tmp_path / "r"
    svc = Running(["run"], slow_pg_env(pg, remote, lockfile, BACKUP_SCHEDULE="0 3 * * *", BACKUP_ON_START="true"))
    svc.wait_for("backup started")
    deadline = time.monotonic() + 20
    while not children_named("pg_dump", svc.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)
    t0 = time.monotonic()
    assert svc.stop() == 1
    assert time.monotonic() - t0 < 15
    assert not remote.exists() or os.listdir(remote) == []
    assert children_named("rclone", svc.proc.pid) == []


def test_a_tick_during_a_run_is_skipped(pg: PgServer, tmp_path: Path, lockfile: str) -> None:
    remote = tmp_path / "r"
    svc = Running(["run"], slow_pg_env(pg, remote, lockfile, BACKUP_SCHEDULE="* * * * * *"))
    svc.wait_for("backup started")
    most = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        most = max(most, len(uploads_of(svc.proc.pid)))
        time.sleep(0.05)
    svc.wait_for("skipped a scheduled backup")
    svc.stop()
    assert most == 1  # never two uploads at once
    assert len([m for m in svc.messages() if m == "backup started"]) == 1


def test_lock_file_stops_a_second_process_and_a_killed_holder_never_blocks(
    pg: PgServer, sqlite_db: Path, tmp_path: Path, lockfile: str
) -> None:
    holder = Running(["run"], slow_pg_env(pg, tmp_path / "a", lockfile, BACKUP_SCHEDULE="once"))
    holder.wait_for("backup started")
    second = subprocess.run(
        [*DBSTASH, "run"],
        env={"PATH": os.environ["PATH"], **sqlite_env(sqlite_db, tmp_path / "b", lockfile, BACKUP_SCHEDULE="once")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert "another backup is running" in second.stderr and lockfile in second.stderr
    assert not (tmp_path / "b").exists()
    holder.stop(signal.SIGKILL)  # the kernel drops its flock with it
    third = subprocess.run(
        [*DBSTASH, "run"],
        env={"PATH": os.environ["PATH"], **sqlite_env(sqlite_db, tmp_path / "b", lockfile, BACKUP_SCHEDULE="once")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert third.returncode == 0, third.stderr
    assert len([n for n in os.listdir(tmp_path / "b") if not n.endswith(MANIFEST_SUFFIX)]) == 1


def test_timeout_in_the_entrypoint(pg: PgServer, tmp_path: Path, lockfile: str) -> None:
    remote = tmp_path / "r"
    svc = Running(["run"], slow_pg_env(pg, remote, lockfile, BACKUP_SCHEDULE="once", BACKUP_TIMEOUT="2s"))
    assert svc.proc.wait(60) == 1
    svc._reader.join(5)
    assert any("exceeded its timeout of 2s" in m for m in svc.messages())
    assert not remote.exists() or os.listdir(remote) == []


def test_dry_run_touches_neither_database_nor_remote(pg: PgServer, tmp_path: Path, lockfile: str) -> None:
    remote = tmp_path / "r"
    remote.mkdir()
    for day in range(1, 6):
        (remote / f"app-2026-01-0{day}-020000.sql").write_text("old")
    before_files = sorted(os.listdir(remote))
    before_connections = pg.connections()
    env = {
        "DB_URI": pg.uri(),
        "RCLONE_REMOTE": str(remote),
        "BACKUP_LOCK_FILE": lockfile,
        "DRY_RUN": "true",
        "RETENTION_MAX_FILES": "2",
        "BACKUP_SCHEDULE": "0 2 * * *",
    }
    out = subprocess.run(
        [*DBSTASH, "run"], env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    messages = [r["message"] for r in records]
    argv = next(r["dump_argv"] for r in records if str(r["message"]).startswith("dry run: dump command"))
    assert argv[0].endswith("pg_dump") and "--no-password" in argv
    assert any(m.startswith("dry run: would upload to") for m in messages)
    deletes = [m for m in messages if m.startswith("dry run: retention would delete")]
    assert len(deletes) == 4  # 5 old + the one it would make, keep 2
    assert pg.password not in out.stderr + out.stdout
    assert sorted(os.listdir(remote)) == before_files
    assert pg.connections() == before_connections
    assert not os.path.exists(lockfile)  # not even the lock was taken


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HEALTH_PORT": str(port)}
    return subprocess.run([*DBSTASH, "healthcheck"], env=env, capture_output=True, text=True, timeout=30)


def test_health_and_metrics(sqlite_db: Path, tmp_path: Path, lockfile: str) -> None:
    port = free_port()
    env = sqlite_env(
        sqlite_db,
        tmp_path / "r",
        lockfile,
        BACKUP_SCHEDULE="* * * * * */2",
        HEALTH_PORT=str(port),
        HEALTH_ADDR="127.0.0.1",
    )
    svc = Running(["run"], env)
    base = f"http://127.0.0.1:{port}"
    svc.wait_for("health endpoint listening")
    first = requests.get(base + "/healthz", timeout=5)
    assert first.status_code == 200 and first.json()["status"] == "ok"
    svc.wait_for("backup complete")
    time.sleep(0.3)
    health = requests.get(base + "/healthz", timeout=5).json()
    assert health["last_run"]["status"] == "success" and health["last_run"]["size"] > 0
    assert health["last_success"] and health["next_run"]
    metrics = requests.get(base + "/metrics", timeout=5).text
    assert 'dbstash_runs_total{outcome="success"}' in metrics
    size_line = next(line for line in metrics.splitlines() if line.startswith("dbstash_last_backup_size_bytes "))
    assert float(size_line.split()[1]) == health["last_run"]["size"]
    hc = healthcheck(port)
    assert hc.returncode == 0

    moved = sqlite_db.with_suffix(".away")
    sqlite_db.rename(moved)  # the next run fails
    svc.wait_for("backup failed")
    time.sleep(0.3)
    failing = requests.get(base + "/healthz", timeout=5)
    assert failing.status_code == 503 and failing.json()["status"] == "failing"
    assert 'dbstash_runs_total{outcome="failure"} 1.0' in requests.get(base + "/metrics", timeout=5).text
    hc = healthcheck(port)
    assert hc.returncode == 1
    moved.rename(sqlite_db)
    svc.wait_for("backup complete")
    time.sleep(0.3)
    assert requests.get(base + "/healthz", timeout=5).status_code == 200
    assert svc.stop() == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/healthz", timeout=2)


def test_health_and_metrics_say_what_each_destination_did(sqlite_db: Path, tmp_path: Path, lockfile: str) -> None:
    """Two destinations, one of which cannot be written (a file where its folder should be), and
    BACKUP_REQUIRED_DESTINATIONS=any: the run succeeds, /healthz and /metrics name the lost one, and the
    success notification's text says it failed."""
    good, blocker = tmp_path / "good", tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    bad = blocker / "backups"
    port = free_port()
    env = sqlite_env(
        sqlite_db,
        good,
        lockfile,
        RCLONE_REMOTE=f"{good}\n{bad}",
        BACKUP_REQUIRED_DESTINATIONS="any",
        BACKUP_SCHEDULE="* * * * * */30",
        BACKUP_ON_START="true",
        HEALTH_PORT=str(port),
        HEALTH_ADDR="127.0.0.1",
    )
    svc = Running(["run"], env)
    record = svc.wait_for("backup complete")
    time.sleep(0.3)
    base = f"http://127.0.0.1:{port}"
    health = requests.get(base + "/healthz", timeout=5)
    assert health.status_code == 200, "the requirement (any) was met"
    assert health.json()["destinations"] == {str(good): "success", str(bad): "failure"}
    metrics = requests.get(base + "/metrics", timeout=5).text
    assert f'dbstash_destination_runs_total{{outcome="failure",remote="{bad}"}} 1.0' in metrics
    assert f'dbstash_destination_runs_total{{outcome="success",remote="{good}"}} 1.0' in metrics
    assert f'dbstash_destination_last_success_timestamp_seconds{{remote="{good}"}}' in metrics
    assert str(bad) in str(record["copies"]), record
    assert len([p for p in os.listdir(good) if not p.endswith(MANIFEST_SUFFIX)]) == 1
    assert svc.stop() == 0


def test_no_health_endpoint_in_once_mode(sqlite_db: Path, tmp_path: Path, lockfile: str) -> None:
    port = free_port()
    svc = Running(
        ["run"],
        sqlite_env(
            sqlite_db, tmp_path / "r", lockfile, BACKUP_SCHEDULE="once", HEALTH_PORT=str(port), HEALTH_ADDR="127.0.0.1"
        ),
    )
    assert svc.proc.wait(60) == 0
    svc._reader.join(5)
    assert not any("health endpoint" in m for m in svc.messages())


def _unshare_works() -> bool:
    try:
        return (
            subprocess.run(
                ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_as_pid_1_sigterm_still_stops_it(sqlite_db: Path, tmp_path: Path, lockfile: str) -> None:
    """PID 1 gets no default signal handling from the kernel: dbstash must handle SIGTERM itself."""
    if not _unshare_works():
        pytest.skip("unshare --pid is not permitted here (needs root or user namespaces)")
    env = {
        "PATH": os.environ["PATH"],
        **sqlite_env(sqlite_db, tmp_path / "r", lockfile, BACKUP_SCHEDULE="* * * * * */2"),
    }
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", *DBSTASH, "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    inner: list[int] = []
    while time.monotonic() < deadline and not inner:
        inner = [p for p in children_named("python3", proc.pid) + children_named("python", proc.pid)]
        time.sleep(0.1)
    assert inner, "dbstash did not start inside the new PID namespace"
    with open(f"/proc/{inner[0]}/status") as fh:
        assert any(line.startswith("NSpid:") and line.split()[-1] == "1" for line in fh)
    time.sleep(3)  # at least one run
    os.kill(inner[0], signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(os.listdir(tmp_path / "r")) >= 1


def _fds() -> int:
    """Open descriptors once the transient ones are gone: the lowest of a few readings 20 ms apart
    (a reaped child's pipes may still be closing in their drain threads when a run has just ended)."""
    readings = []
    for _ in range(10):
        readings.append(len(os.listdir("/proc/self/fd")))
        time.sleep(0.02)
    return min(readings)


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def test_endurance_200_runs_keep_fds_and_memory_flat(sqlite_db: Path, tmp_path: Path) -> None:
    import anyio

    from dbstash import Settings
    from dbstash.service import Service

    settings = Settings.from_env(
        sqlite_env(sqlite_db, tmp_path / "r", str(tmp_path / "l"), BACKUP_SCHEDULE="0 2 * * *", LOG_LEVEL="error")
    )
    samples: dict[int, tuple[int, int]] = {}
    count = iter(range(1, 1000))

    def sample(_: object) -> None:
        n = next(count)
        if n in (20, 200):
            samples[n] = (_fds(), _rss_kb())

    # a tick every 20 ms: each run starts as soon as the previous one ended (ticks during a run are skipped)
    service = Service(settings, next_time=lambda now: now + timedelta(milliseconds=20), max_runs=200, on_result=sample)
    assert anyio.run(service.run) == 0
    assert service.metrics.runs.labels(outcome="success")._value.get() == 200
    assert len([n for n in os.listdir(tmp_path / "r") if not n.endswith(MANIFEST_SUFFIX)]) == 200
    (fds20, rss20), (fds200, rss200) = samples[20], samples[200]
    # a leak grows and stays: every reading of _fds() holds it
    assert fds200 <= fds20, f"file descriptors grew from {fds20} to {fds200}"
    assert rss200 - rss20 < 8 * 1024, f"RSS grew by {(rss200 - rss20) / 1024:.1f} MB over 180 runs"


@pytest.fixture(autouse=True)
def _no_leftover_children() -> Iterator[None]:
    yield
    assert children_named("rclone", os.getpid(), "rcat") == []


def test_verify_schedule_feeds_health_metrics_and_notifications(sqlite_db: Path, tmp_path: Path, lockfile: str) -> None:
    """VERIFY_SCHEDULE runs the restore drill on its own cron: /healthz, /metrics and a webhook hear of it."""
    from tests.support.receivers import HttpReceiver

    hook = HttpReceiver().start()
    port = free_port()
    env = sqlite_env(
        sqlite_db,
        tmp_path / "r",
        lockfile,
        BACKUP_SCHEDULE="0 0 1 1 *",
        BACKUP_ON_START="true",
        VERIFY_SCHEDULE="* * * * * */2",  # every 2 s (croniter: a sixth field, seconds)
        HEALTH_PORT=str(port),
        HEALTH_ADDR="127.0.0.1",
        NOTIFY_WEBHOOK_URL=f"http://127.0.0.1:{hook.port}/hook",
        NOTIFY_WEBHOOK_FORMAT="json",
        NOTIFY_ON="always",
    )
    svc = Running(["run"], env)
    try:
        svc.wait_for("backup complete")
        svc.wait_for("verify: restored")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            if health["last_verify"]["status"] == "success":
                break
            time.sleep(0.2)
        assert health["last_verify"]["counts"] == {"orders": 500, "users": 200}
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'dbstash_verify_runs_total{outcome="success"}' in metrics
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            (r.json() or {}).get("event") == "verify.success" for r in hook.requests
        ):
            time.sleep(0.2)
        events = [(r.json() or {}).get("event") for r in hook.requests]
        assert "backup.success" in events and "verify.success" in events
    finally:
        assert svc.stop() == 0
        hook.stop()

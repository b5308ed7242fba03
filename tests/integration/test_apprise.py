"""apprise notifications (NOTIFY_URLS) against real receivers on loopback: json:// and form:// to an HTTP
recorder, mailto:// to an SMTP server; NOTIFY_ON honoured; a down or slow endpoint never changes the
backup's outcome; the URLs' tokens never appear in logs, dry runs or errors."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.support.receivers import HttpReceiver, SmtpReceiver
from tests.support.servers import free_port

pytestmark = pytest.mark.integration
DBSTASH = [sys.executable, "-m", "dbstash_cli"]
TOKEN = "AppRiseTok3nXyz987"


def run(db: Path, remote: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DBSTASH, *(args or ("run",))],
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "DB_URI": f"sqlite:///{db}",
            "RCLONE_REMOTE": str(remote),
            "BACKUP_SCHEDULE": "once",
            "LOG_LEVEL": "debug",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_json_form_and_mailto_receive_the_success(
    sqlite_db: Path, tmp_path: Path, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    urls = " ".join(
        [
            http.url(f"/json/{TOKEN}").replace("http://", "json://"),
            http.url("/form").replace("http://", "form://"),
            f"mailto://127.0.0.1:{smtp.port}?from=dbstash@example.com&to=ops@example.com,dba@example.com",
        ]
    )
    done = run(sqlite_db, tmp_path / "r", NOTIFY_URLS=urls, NOTIFY_ON="always")
    assert done.returncode == 0, done.stderr
    by_path = {r.path: r for r in http.requests}
    body = by_path[f"/json/{TOKEN}"].json()
    assert body["type"] == "success" and body["title"] == "dbstash: backup of sqlite/app succeeded"
    assert "SHA-256: " in body["message"] and "Remote path: " in body["message"]
    form = parse_qs(by_path["/form"].body.decode())
    assert form["type"] == ["success"] and form["title"] == ["dbstash: backup of sqlite/app succeeded"]
    assert sorted(r for _, rcpts, _ in smtp.messages for r in rcpts) == ["dba@example.com", "ops@example.com"]
    for sender, _, raw in smtp.messages:  # apprise mails each recipient
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert sender == "dbstash@example.com"
        assert message["Subject"] == "dbstash: backup of sqlite/app succeeded"
    assert TOKEN not in done.stderr + done.stdout


def test_notify_on_failure_sends_only_failures(tmp_path: Path, http: HttpReceiver) -> None:
    url = http.url("/hook").replace("http://", "json://")
    good = tmp_path / "ok.db"
    subprocess.run(["sqlite3", str(good), "CREATE TABLE t(a); INSERT INTO t VALUES (1);"], check=True)
    assert run(good, tmp_path / "r", NOTIFY_URLS=url, NOTIFY_ON="failure").returncode == 0
    assert http.requests == [], "a success is not reported with NOTIFY_ON=failure"
    missing = tmp_path / "gone.db"
    failed = run(missing, tmp_path / "r", NOTIFY_URLS=url, NOTIFY_ON="failure")
    assert failed.returncode != 0
    [req] = http.requests
    body = req.json()
    assert body["type"] == "failure" and "FAILED" in body["title"] and "Error: " in body["message"]


def test_a_down_or_slow_endpoint_never_changes_the_outcome(sqlite_db: Path, tmp_path: Path) -> None:
    down = f"json://127.0.0.1:{free_port()}/{TOKEN}"  # nothing listens there
    slow = HttpReceiver(delay=5).start()
    try:
        t0 = time.monotonic()
        done = run(
            sqlite_db,
            tmp_path / "r",
            NOTIFY_URLS=f"{down},{slow.url('/slow').replace('http://', 'json://')}",
            NOTIFY_ON="always",
            NOTIFY_TIMEOUT="1",
        )
        elapsed = time.monotonic() - t0
    finally:
        slow.stop()
    assert done.returncode == 0, done.stderr
    assert len([n for n in os.listdir(tmp_path / "r") if n.endswith(".sql")]) == 1
    warnings = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    [failure] = [w for w in warnings if w["message"].startswith("could not notify apprise")]
    assert "json://127.0.0.1" in failure["message"] and TOKEN not in done.stderr
    assert len(slow.requests) == 3, "three attempts, each bounded by NOTIFY_TIMEOUT"
    assert elapsed < 60


def test_bad_urls_exit_2_without_echoing_them(sqlite_db: Path, tmp_path: Path) -> None:
    done = run(sqlite_db, tmp_path / "r", NOTIFY_URLS=f"nosuchservice://{TOKEN}@host/x")
    assert done.returncode == 2
    assert "NOTIFY_URLS" in done.stderr and TOKEN not in done.stderr
    assert not (tmp_path / "r").exists()


def test_dry_run_and_logs_never_show_the_tokens(sqlite_db: Path, tmp_path: Path, http: HttpReceiver) -> None:
    secret_file = tmp_path / "urls"
    secret_file.write_text(http.url(f"/a/{TOKEN}").replace("http://", "json://") + "\n")
    secret_file.chmod(0o600)
    dry = run(sqlite_db, tmp_path / "r", NOTIFY_URLS_FILE=str(secret_file), DRY_RUN="true")
    assert dry.returncode == 0, dry.stderr
    assert TOKEN not in dry.stdout + dry.stderr
    done = run(sqlite_db, tmp_path / "r", NOTIFY_URLS_FILE=str(secret_file), NOTIFY_ON="always")
    assert done.returncode == 0
    assert TOKEN not in done.stdout + done.stderr
    assert [r.path for r in http.requests] == [f"/a/{TOKEN}"]

"""Notifications and hooks against real receivers on loopback (HTTP and SMTP)."""

from __future__ import annotations

import email
import email.policy
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dbstash
from dbstash import DumpFailed, HookFailed, Settings
from tests.support.receivers import HttpReceiver, SmtpReceiver
from tests.support.servers import PgServer, free_port

pytestmark = pytest.mark.integration
TOKEN = "XyZsecretTOKEN123"


def settings(db: Path, remote: Path, **env: str) -> Settings:
    return Settings.from_env({"DB_URI": f"sqlite:///{db}", "RCLONE_REMOTE": str(remote), **env})


def test_slack_payload(sqlite_db: Path, tmp_path: Path, http: HttpReceiver) -> None:
    s = settings(
        sqlite_db, tmp_path / "r", NOTIFY_WEBHOOK_URL=http.url(f"/services/T000/B000/{TOKEN}"), NOTIFY_ON="always"
    )
    result = dbstash.backup(settings=s)
    [req] = http.requests
    body = req.json()
    assert req.path == f"/services/T000/B000/{TOKEN}" and req.headers["Content-Type"] == "application/json"
    assert body["text"] == "dbstash: backup of sqlite/app succeeded"
    fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
    assert body["attachments"][0]["color"] == "good"
    assert fields["Status"] == "success" and fields["Database"] == "app" and fields["Engine"] == "sqlite"
    assert fields["Remote path"] == result.remote_path and fields["SHA-256"] == result.sha256
    assert fields["Size"].endswith(("B", "KiB"))


def test_discord_payload_on_failure(tmp_path: Path, http: HttpReceiver) -> None:
    s = settings(tmp_path / "missing.db", tmp_path / "r", NOTIFY_WEBHOOK_URL=http.url(f"/api/webhooks/42/{TOKEN}"))
    with pytest.raises(dbstash.ConfigError):
        dbstash.backup(settings=s)
    [req] = http.requests
    body = req.json()
    embed = body["embeds"][0]
    assert body["content"] == "dbstash: backup of sqlite/missing FAILED" and embed["color"] == 0xE74C3C
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Status"] == "failure" and "existing SQLite database file" in fields["Error"]


def test_generic_webhook_and_notify_on(sqlite_db: Path, tmp_path: Path, http: HttpReceiver) -> None:
    url = http.url("/hooks/backup")
    dbstash.backup(settings=settings(sqlite_db, tmp_path / "r", NOTIFY_WEBHOOK_URL=url))  # default: failure only
    assert http.requests == []
    dbstash.backup(settings=settings(sqlite_db, tmp_path / "r", NOTIFY_WEBHOOK_URL=url, NOTIFY_ON="success"))
    [req] = http.requests
    body = req.json()
    assert body["event"] == "backup.success" and body["status"] == "success" and body["size"] > 0
    assert set(body) >= {"engine", "database", "backup_id", "remote_path", "sha256", "duration", "error"}


def test_email(sqlite_db: Path, tmp_path: Path, smtp: SmtpReceiver) -> None:
    s = settings(
        sqlite_db,
        tmp_path / "r",
        NOTIFY_SMTP_URL=f"smtp://127.0.0.1:{smtp.port}",
        NOTIFY_EMAIL_TO="ops@example.test, dba@example.test",
        NOTIFY_EMAIL_FROM="dbstash@example.test",
        NOTIFY_ON="always",
    )
    result = dbstash.backup(settings=s)
    [(sender, rcpts, raw)] = smtp.messages
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert sender == "dbstash@example.test" and rcpts == ["ops@example.test", "dba@example.test"]
    assert msg["Subject"] == "dbstash: backup of sqlite/app succeeded"
    body = msg.get_content()
    assert f"Remote path: {result.remote_path}" in body and f"SHA-256: {result.sha256}" in body


def test_ping_start_success_then_start_fail(sqlite_db: Path, tmp_path: Path, http: HttpReceiver) -> None:
    ping = http.url("/ping/5f0c7d1e-uuid")
    dbstash.backup(settings=settings(sqlite_db, tmp_path / "r", NOTIFY_PING_URL=ping))
    with pytest.raises(DumpFailed):
        dbstash.backup(
            settings=settings(sqlite_db, tmp_path / "r", NOTIFY_PING_URL=ping, DUMP_EXTRA_ARGS="-no-such-flag")
        )
    assert [r.path for r in http.requests] == [
        "/ping/5f0c7d1e-uuid/start",
        "/ping/5f0c7d1e-uuid",
        "/ping/5f0c7d1e-uuid/start",
        "/ping/5f0c7d1e-uuid/fail",
    ]
    assert http.requests[-1].json()["error_type"] == "DumpFailed"


def test_down_and_slow_receivers_never_change_the_outcome(sqlite_db: Path, tmp_path: Path) -> None:
    slow = HttpReceiver(delay=3).start()
    try:
        down = f"http://127.0.0.1:{free_port()}/services/T/B/{TOKEN}"
        s = settings(
            sqlite_db,
            tmp_path / "r",
            NOTIFY_WEBHOOK_URL=down,
            NOTIFY_PING_URL=slow.url("/ping/x"),
            NOTIFY_ON="always",
            NOTIFY_TIMEOUT="1s",
        )
        t0 = time.monotonic()
        result = dbstash.backup(settings=s)
        elapsed = time.monotonic() - t0
    finally:
        slow.stop()
    assert (tmp_path / "r" / result.name).stat().st_size == result.size
    assert elapsed < 30  # 3 attempts x 1 s timeout + backoff, per notifier, concurrently
    assert len(slow.requests) >= 3  # retried


def test_no_secret_in_any_payload(pg: PgServer, tmp_path: Path, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    env = {
        "DB_URI": pg.uri(password=False),
        "DB_PASSWORD": "wrong-" + pg.password,
        "RCLONE_REMOTE": str(tmp_path),
        "NOTIFY_WEBHOOK_URL": http.url(f"/services/T/B/{TOKEN}"),
        "NOTIFY_PING_URL": http.url("/ping/abc"),
        "NOTIFY_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
        "NOTIFY_EMAIL_TO": "ops@example.test",
        "NOTIFY_ON": "always",
        "BACKUP_SCHEDULE": "once",
    }
    out = subprocess.run(
        [sys.executable, "-m", "dbstash_cli", "run"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    payloads = [r.body for r in http.requests] + [m[2] for m in smtp.messages]
    assert len(payloads) == 4  # ping start, slack failure, ping fail, email
    for secret in (pg.password, "wrong-" + pg.password, TOKEN):
        assert all(secret.encode() not in p for p in payloads)
        assert secret not in out.stderr + out.stdout
    assert any(b"password authentication failed" in p for p in payloads)


def test_bad_notification_settings_exit_2(sqlite_db: Path, tmp_path: Path) -> None:
    for env in (
        {"NOTIFY_WEBHOOK_URL": "ftp://x/y"},
        {"NOTIFY_ON": "sometimes"},
        {"NOTIFY_SMTP_URL": "smtpx://h", "NOTIFY_EMAIL_TO": "a@b"},
        {"NOTIFY_EMAIL_TO": "a@b"},
        {"NOTIFY_PING_URL": "not a url"},
        {"HOOK_TIMEOUT": "forever"},
    ):
        out = subprocess.run(
            [sys.executable, "-m", "dbstash_cli", "run"],
            env={
                "PATH": os.environ["PATH"],
                "DB_URI": f"sqlite:///{sqlite_db}",
                "RCLONE_REMOTE": str(tmp_path / "r"),
                "BACKUP_SCHEDULE": "once",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, (env, out.stderr)
        assert next(iter(env)) in out.stderr or "NOTIFY_SMTP_URL" in out.stderr
        assert not (tmp_path / "r").exists()


# -- hooks -------------------------------------------------------------------------------------
def test_pre_hook_failure_aborts_and_is_notified(sqlite_db: Path, tmp_path: Path, http: HttpReceiver) -> None:
    remote = tmp_path / "r"
    s = settings(sqlite_db, remote, HOOK_PRE_BACKUP="echo checking; exit 3", NOTIFY_WEBHOOK_URL=http.url("/h"))
    with pytest.raises(HookFailed, match="status 3"):
        dbstash.backup(settings=s)
    assert not remote.exists()
    [req] = http.requests
    assert req.json()["status"] == "failure" and req.json()["error_type"] == "HookFailed"


def test_post_hook_sees_status_and_file(sqlite_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "hook.env"
    cmd = f'printf "%s|%s|%s|%s\\n" "$DBSTASH_STATUS" "$DBSTASH_FILE" "$DBSTASH_SIZE" "$DBSTASH_SHA256" >> {out}'
    # {uuid}: two runs in the same second must not share a name
    unique = {"HOOK_POST_BACKUP": cmd, "BACKUP_NAME_TEMPLATE": "{db}-{uuid}"}
    result = dbstash.backup(settings=settings(sqlite_db, tmp_path / "r", **unique))
    with pytest.raises(DumpFailed):
        dbstash.backup(settings=settings(sqlite_db, tmp_path / "r", DUMP_EXTRA_ARGS="-no-such-flag", **unique))
    ok, failed = out.read_text().splitlines()
    assert ok == f"success|{result.remote_path}|{result.size}|{result.sha256}"
    status, path, size, sha = failed.split("|")
    assert status == "failure" and path.startswith(str(tmp_path / "r")) and size == "" and sha == ""
    assert not os.path.exists(path)  # the path it would have had: nothing is there


def test_hook_timeout_and_output_logged(sqlite_db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dbstash")
    s = settings(sqlite_db, tmp_path / "r", HOOK_PRE_BACKUP="echo hello-from-hook; sleep 30", HOOK_TIMEOUT="1s")
    t0 = time.monotonic()
    with pytest.raises(HookFailed, match="status 124"):
        dbstash.backup(settings=s)
    assert time.monotonic() - t0 < 10
    assert any("hello-from-hook" in r.getMessage() for r in caplog.records)


def test_python_objects_as_notifiers_and_hooks(sqlite_db: Path, tmp_path: Path, http: HttpReceiver) -> None:
    seen: list[str] = []

    class Recorder:
        async def run(self, event: dbstash.RunEvent) -> int:
            seen.append(event.stage)
            return 0

    result = dbstash.backup(
        f"sqlite:///{sqlite_db}",
        remote=str(tmp_path / "r"),
        notifiers=[dbstash.WebhookNotifier(http.url("/x"), "always")],
        pre_hook=Recorder(),
        post_hook=Recorder(),
    )
    assert seen == ["start", "success"]
    assert http.requests[0].json()["sha256"] == result.sha256

"""`dbstash prune` against real rclone remotes holding two years of daily backups."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbstash.jobs.naming import partial_name
from dbstash.jobs.retention import PERIODS, Backup
from tests.support.servers import S3Server
from tests.unit.test_retention_keep import representatives

pytestmark = pytest.mark.e2e
KEEP = {"daily": 7, "weekly": 4, "monthly": 12, "yearly": 3}


def history() -> list[Backup]:
    """Daily backups at 02:00 UTC for the last 730 days, named by the default template."""
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    if today > datetime.now(UTC):
        today -= timedelta(days=1)
    return [Backup(f"app-{t:%Y-%m-%d-%H%M%S}.sql", t) for t in (today - timedelta(days=d) for d in range(730))]


def expected_survivors(backups: list[Backup]) -> set[str]:
    keys = dict(PERIODS)
    keep = {max(backups, key=lambda b: b.taken_at).name}
    for period, n in KEEP.items():
        keep |= representatives(backups, keys[period], n, "UTC")
    return keep


def prune(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}
    return subprocess.run(
        [sys.executable, "-m", "dbstash_cli", "prune", *args], env=full, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("where", ["local", "s3"])
def test_prune_two_years(tmp_path: Path, s3: S3Server, sqlite_db: Path, where: str) -> None:
    backups = history()
    foreign = [
        "other-2025-01-01-020000.sql",
        "app-notes.txt",
        "app-2025-01-01-020000.dump",
        partial_name(backups[400].name, "deadbeef"),
    ]
    if where == "local":
        folder = tmp_path / "remote"
        remote, extra = str(folder), {}
    else:
        name = f"prune-{uuid.uuid4().hex[:8]}"
        folder = Path(s3.root) / s3.bucket / name
        remote, extra = s3.remote(name), {"RCLONE_CONFIG": base64.b64encode(s3.config.encode()).decode()}
    folder.mkdir(parents=True)
    for n in [b.name for b in backups] + foreign:
        (folder / n).write_text("x")
    if where == "s3":
        time.sleep(1.5)  # files written behind `rclone serve s3`'s back: its --dir-cache-time is 1 s
    env = {
        "DB_URI": f"sqlite:///{sqlite_db}",
        "RCLONE_REMOTE": remote,
        "TZ": "UTC",
        **extra,
        **{f"RETENTION_KEEP_{k.upper()}": str(v) for k, v in KEEP.items()},
    }

    dry = prune(env, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and report["deleted"] == []
    assert len(os.listdir(folder)) == len(backups) + len(foreign)  # nothing touched
    want = expected_survivors(backups)
    assert {r["name"] for r in report["backups"] if r["action"] == "keep"} == want
    assert len(report["backups"]) == len(backups)  # foreign files and the partial are not this job's
    newest = report["backups"][0]
    assert newest["action"] == "keep" and "newest backup" in newest["reasons"]

    text = prune(env, "--dry-run")
    assert text.returncode == 0
    assert f"{len(want)} kept, {len(backups) - len(want)} would delete (dry run" in text.stdout

    real = prune(env)
    assert real.returncode == 0, real.stderr
    assert set(os.listdir(folder)) == want | set(foreign)
    assert 7 + 3 <= len(want) <= 7 + 4 + 12 + 3
    again = prune(env, "--json")
    assert json.loads(again.stdout)["deleted"] == []  # idempotent on a real remote


def test_prune_without_rules_deletes_nothing(tmp_path: Path, sqlite_db: Path) -> None:
    folder = tmp_path / "r"
    folder.mkdir()
    for b in history()[:20]:
        (folder / b.name).write_text("x")
    out = prune({"DB_URI": f"sqlite:///{sqlite_db}", "RCLONE_REMOTE": str(folder)}, "--json")
    assert out.returncode == 0
    assert json.loads(out.stdout)["deleted"] == [] and len(os.listdir(folder)) == 20
    assert "every backup is kept" in out.stderr


def test_prune_bad_rule_exits_2(tmp_path: Path, sqlite_db: Path) -> None:
    out = prune({"DB_URI": f"sqlite:///{sqlite_db}", "RCLONE_REMOTE": str(tmp_path), "RETENTION_KEEP_DAILY": "x"})
    assert out.returncode == 2 and "RETENTION_KEEP_DAILY" in out.stderr

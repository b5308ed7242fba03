"""A backup host that cannot destroy history (issue 26, item 3): its S3 credential may write but not
delete. The suite's real ``rclone serve s3`` sits behind :class:`NoDeleteProxy`, a loopback fault
injector that refuses every DELETE with 403 AccessDenied, as a bucket policy without
``s3:DeleteObject`` or an Object Lock does (``rclone serve s3`` has neither of its own).

Decisions pinned here: the backup path needs no deletion (the zero-byte claim it cannot remove is
left, logged, hidden from ``list``, and removed by a ``prune`` run with delete rights); retention and
``prune`` report a refused deletion as ``retained (locked)``, not as an error.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import dbstash
from dbstash import RcloneOptions, Settings
from dbstash.jobs.manifest import manifest_name, signature_name
from tests.support.nodelete import NoDeleteProxy
from tests.support.servers import S3Server

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(s3: S3Server) -> Iterator[NoDeleteProxy]:
    p = NoDeleteProxy(s3.port)
    yield p
    p.close()


@pytest.fixture
def signing(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "backup-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key, Path(f"{key}.pub").read_text().strip()


def _db(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        c.executemany("INSERT INTO t(v) VALUES (?)", [(f"row {i}",) for i in range(100)])
    return f"sqlite:///{path}"


def _settings(uri: str, config: str, folder: str, **more: object) -> Settings:
    return Settings.create(uri, remote=f"wo:backups/{folder}", rclone=RcloneOptions(config_text=config), **more)  # type: ignore[arg-type]


def _backups(s3: S3Server, folder: str) -> list[str]:
    return [n for n in s3.files(folder) if n.endswith(".sql")]


def test_a_backup_needs_no_delete_right(
    s3: S3Server, proxy: NoDeleteProxy, signing: tuple[Path, str], tmp_path: Path
) -> None:
    key, public = signing
    folder = f"wo-{uuid.uuid4().hex[:6]}"
    config = proxy.config("wo", s3.access_key, s3.secret_key)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "DB_URI": _db(tmp_path),
        "RCLONE_REMOTE": f"wo:backups/{folder}",
        "RCLONE_CONFIG": base64.b64encode(config.encode()).decode(),
        "BACKUP_SCHEDULE": "once",
        "BACKUP_SIGNING_KEY_FILE": str(key),
        **{k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ},
    }
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "dbstash_cli", "run"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert "prune, run with delete rights, removes it" in done.stderr, "the left claim is explained"
    assert proxy.refused, "the proxy did refuse deletions (the test would prove nothing otherwise)"
    assert all(r.startswith("DELETE") and ".dbstash-partial" in r for r in proxy.refused), proxy.refused
    names = _backups(s3, folder)
    assert len(names) == 2
    for name in names:  # each backup whole, with its manifest and signature
        assert {manifest_name(name), signature_name(manifest_name(name))} <= set(s3.files(folder))
    settings = _settings(env["DB_URI"], config, folder, trusted_keys=public)
    infos = dbstash.list_backups(settings)
    # (two runs in one second: the second is suffixed, and listed first as the newer; a set compares either way)
    assert len(infos) == 2 and {i.name for i in infos} == set(names), "the left claims are not listed"
    assert all(i.complete and i.untrusted is None for i in infos)
    restored = tmp_path / "restored.db"
    assert dbstash.restore(settings, target=str(restored)).checksum_verified
    with sqlite3.connect(restored) as c:
        assert c.execute("SELECT count(*) FROM t").fetchone() == (100,)


def test_prune_elsewhere_with_delete_rights_does_the_retention(
    s3: S3Server, proxy: NoDeleteProxy, signing: tuple[Path, str], tmp_path: Path
) -> None:
    key, public = signing
    folder = f"wo-{uuid.uuid4().hex[:6]}"
    uri = _db(tmp_path)
    writer = _settings(uri, proxy.config("wo", s3.access_key, s3.secret_key), folder, signing_key=key)
    made = [dbstash.backup(settings=writer).name for _ in range(3)]
    assert any(n.endswith(".dbstash-partial") for n in s3.files(folder)), "claims were left"
    # the prune host: its own credential may delete (straight to the server, no proxy)
    pruner = _settings(
        uri, s3.config.replace(f"[{s3.remote_name}]", "[wo]"), folder, trusted_keys=public, retention_max_files=1
    )
    result = dbstash.prune(pruner, now=datetime.now(UTC) + timedelta(hours=25))
    assert set(result.deleted) == set(made[:2]) and result.locked == ()
    newest = made[2]
    assert s3.files(folder) == sorted([newest, manifest_name(newest), signature_name(manifest_name(newest))])


def test_retention_on_a_remote_that_refuses_deletes_reports_retained_locked(
    s3: S3Server, proxy: NoDeleteProxy, tmp_path: Path
) -> None:
    folder = f"wo-{uuid.uuid4().hex[:6]}"
    uri = _db(tmp_path)
    config = proxy.config("wo", s3.access_key, s3.secret_key)
    kept_all = _settings(uri, config, folder)
    first = dbstash.backup(settings=kept_all).name
    # a backup run with retention: the backup stands, retention says what it could not delete
    result = dbstash.backup(settings=_settings(uri, config, folder, retention_max_files=1))
    assert result.retention_error is None
    assert result.locked == (first,) and result.deleted == ()
    # prune through the same credential: reported, not an error
    pruned = dbstash.prune(_settings(uri, config, folder, retention_max_files=1))
    assert pruned.locked == (first,) and pruned.deleted == ()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "DB_URI": uri,
        "RCLONE_REMOTE": f"wo:backups/{folder}",
        "RCLONE_CONFIG": base64.b64encode(config.encode()).decode(),
        "RETENTION_MAX_FILES": "1",
        **{k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ},
    }
    cli = [sys.executable, "-m", "dbstash_cli", "prune"]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "retained (locked)" in done.stdout and first in done.stdout
    as_json = json.loads(subprocess.run([*cli, "--json"], env=env, capture_output=True, text=True, timeout=120).stdout)
    assert as_json["locked"] == [first]
    assert first in _backups(s3, folder), "and it is still there"

"""Encryption at rest, the spec's way: an rclone crypt remote wrapping the real one, nothing in dbstash."""

from __future__ import annotations

import configparser
import sqlite3
import subprocess
from pathlib import Path

import pytest

import dbstash
from dbstash import RcloneOptions, Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_backup_and_restore_through_a_crypt_remote(sqlite_db: Path, tmp_path: Path, rclone_bin: str) -> None:
    # the shipped example, with its S3 remote replaced by a local folder and real obscured passwords
    conf = configparser.ConfigParser()
    conf.read(ROOT / "examples" / "rclone-crypt.conf")
    vault = tmp_path / "vault"
    vault.mkdir()

    def obscure(text: str) -> str:
        return subprocess.run([rclone_bin, "obscure", text], capture_output=True, text=True, check=True).stdout.strip()

    conf["s3-backup"] = {"type": "local"}
    conf["s3-backup-encrypted"]["remote"] = f"s3-backup:{vault}"
    conf["s3-backup-encrypted"]["password"] = obscure("correct horse battery staple")
    conf["s3-backup-encrypted"]["password2"] = obscure("some salt")
    text = "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in conf[s].items()) + "\n" for s in conf.sections())
    settings = Settings.create(
        f"sqlite:///{sqlite_db}", remote="s3-backup-encrypted:app", rclone=RcloneOptions(config_text=text)
    )
    result = dbstash.backup(settings=settings)
    stored = [p for p in vault.rglob("*") if p.is_file()]
    assert len(stored) == 2  # the backup and its manifest, both encrypted
    for p in stored:
        assert "app" not in str(p.relative_to(vault)), "names are encrypted"
        assert b"CREATE TABLE" not in p.read_bytes() and b"sha256" not in p.read_bytes(), "contents are encrypted"
    assert [i.name for i in dbstash.list_backups(settings)] == [result.name]
    out = tmp_path / "restored.db"
    restored = dbstash.restore(settings, target=str(out))
    assert restored.checksum_verified and restored.sha256 == result.sha256
    con = sqlite3.connect(out)
    assert con.execute("SELECT count(*) FROM users").fetchone() == (200,)
    con.close()

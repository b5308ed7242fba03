"""What a person at a terminal reads from the CLI: "not set" versus "invalid", the CLI's own flags in
its errors (not the library's parameters), why a command needs a database, and result lines written
as sentences (not Python values). The real CLI in a subprocess, on SQLite and a local folder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def dbstash(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [sys.executable, "-m", "dbstash_cli", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unset_variable_is_not_set_and_a_bad_one_is_invalid(tmp_path: Path) -> None:
    unset = dbstash("run")
    assert unset.returncode == 2
    assert "DB_URI: not set; expected a connection URI" in unset.stderr and "invalid" not in unset.stderr
    bad = dbstash("run", env={"DB_URI": "nosuchdb://x", "RCLONE_REMOTE": str(tmp_path)})
    assert bad.returncode == 2 and "DB_URI: invalid value" in bad.stderr, bad.stderr
    no_remote = dbstash("backup", "--uri", f"sqlite:///{tmp_path / 'x.db'}")
    assert no_remote.returncode == 2 and "RCLONE_REMOTE (--remote): not set" in no_remote.stderr


def test_the_entrypoint_names_variables_only_and_the_cli_names_its_flags(tmp_path: Path) -> None:
    bad_port = "postgresql://app@127.0.0.1:notaport/app"
    entry = dbstash("run", env={"DB_URI": bad_port, "RCLONE_REMOTE": str(tmp_path)})
    cli = dbstash("backup", "--uri", bad_port, "--remote", str(tmp_path))
    assert entry.returncode == cli.returncode == 2
    assert "DB_URI:" in entry.stderr and "--uri" not in entry.stderr
    assert "DB_URI (--uri):" in cli.stderr


def test_list_without_a_database_says_why_it_needs_one(tmp_path: Path) -> None:
    proc = dbstash("list", "--remote", str(tmp_path))
    assert proc.returncode == 2
    assert "DB_URI (--uri): not set" in proc.stderr
    assert "finds this job's backups by the names its template gives them" in proc.stderr


def test_restore_prints_sentences_and_a_refusal_names_the_flag(sqlite_db: Path, tmp_path: Path) -> None:
    remote = str(tmp_path / "remote")
    backed = dbstash("backup", "--uri", f"sqlite:///{sqlite_db}", "--remote", remote)
    assert backed.returncode == 0, backed.stderr
    assert backed.stdout.startswith(f"backed up app to {remote}/app-") and "sha256 " in backed.stdout

    target = tmp_path / "restored.db"
    done = dbstash("restore", "--uri", f"sqlite:///{sqlite_db}", "--remote", remote, "--target", f"sqlite:///{target}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("restored app-2") and f"into sqlite://{target}:" in done.stdout
    assert "sha256 verified" in done.stdout
    for python_value in ("kept: []", "checksum_verified", "True", "None", "{"):
        assert python_value not in done.stdout, done.stdout
    assert sqlite3.connect(target).execute("SELECT count(*) FROM users").fetchone() == (200,)

    refused = dbstash(
        "restore", "--uri", f"sqlite:///{sqlite_db}", "--remote", remote, "--target", f"sqlite:///{target}"
    )
    assert refused.returncode == 2
    assert "not empty" in refused.stderr and "--force" in refused.stderr and "force=True" not in refused.stderr


def test_verify_prints_its_drill_as_sentences(sqlite_db: Path, tmp_path: Path) -> None:
    remote = str(tmp_path / "remote")
    assert dbstash("backup", "--uri", f"sqlite:///{sqlite_db}", "--remote", remote).returncode == 0
    scratch = f"sqlite:///{tmp_path / 'scratch.db'}"
    proc = dbstash("verify", "--uri", f"sqlite:///{sqlite_db}", "--remote", remote, "--target", scratch)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("verify ok: app-") and "sha256 verified, 2 tables" in lines[0], lines
    assert any(line.split()[:2] == ["users", "200"] for line in lines), lines
    assert "scratch data dropped" in proc.stdout and "counts:" not in proc.stdout


def test_a_missing_backup_is_named_as_missing_not_as_invalid(sqlite_db: Path, tmp_path: Path) -> None:
    remote = str(tmp_path / "remote")
    job = ("--uri", f"sqlite:///{sqlite_db}", "--remote", remote)
    none_yet = dbstash("restore", *job, "--target", str(tmp_path / "t.db"))
    assert none_yet.returncode == 2
    assert "--backup: this job has no complete backup yet" in none_yet.stderr, none_yet.stderr
    backed = dbstash("backup", *job)
    assert backed.returncode == 0, backed.stderr
    made = backed.stdout.split(f"{remote}/", 1)[1].split()[0].rstrip(":")
    for missing in ("app-2020-01-01-000000.sql", "2020-01-01"):
        proc = dbstash("restore", *job, "--backup", missing, "--target", str(tmp_path / "t.db"))
        assert proc.returncode == 2, proc.stderr
        assert (
            "invalid" not in proc.stderr
            and f"(the {'newest' if '.' in missing else 'oldest'} is {made})" in proc.stderr
        )
        assert not (tmp_path / "t.db").exists(), "nothing was restored"
    impossible = dbstash("restore", *job, "--backup", "2026-13-45", "--target", str(tmp_path / "t.db"))
    assert impossible.returncode == 2 and "--backup: invalid value '2026-13-45'" in impossible.stderr

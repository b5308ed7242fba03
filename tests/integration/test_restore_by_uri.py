"""restore(), verify() and list_backups() take the job as backup() does (a URI, remote=,
name_template=, password=, the name options) and a target's password beside the target
(target_password= / target_password_file=), redacted and never in a child's argv."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

import dbstash
from dbstash import ConfigError, Settings
from tests.support.servers import ArgvScan, PgServer

pytestmark = pytest.mark.integration

TEMPLATE = "{db}-nightly-{ts}"


def rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as con:
        return con.execute("SELECT * FROM users ORDER BY id").fetchall()


def test_the_job_as_backup_took_it_finds_lists_restores_and_verifies(sqlite_db: Path, tmp_path: Path) -> None:
    uri, remote = f"sqlite:///{sqlite_db}", str(tmp_path / "remote")
    made = dbstash.backup(uri, remote=remote, name_template=TEMPLATE, compress="zstd")
    job = {"remote": remote, "name_template": TEMPLATE, "options": {"compress": "zstd"}}

    (listed,) = dbstash.list_backups(uri, **job)  # type: ignore[arg-type]
    assert listed.name == made.name and listed.complete and listed.name.endswith(".zst")
    restored = dbstash.restore(uri, target=str(tmp_path / "copy.db"), **job)  # type: ignore[arg-type]
    assert restored.name == made.name and restored.checksum_verified
    assert rows(tmp_path / "copy.db") == rows(sqlite_db)
    drill = dbstash.verify(uri, **job)  # type: ignore[arg-type]
    assert drill.ok and drill.restore.name == made.name
    # without the template the job names its backups differently: this one is not found as the job's
    assert dbstash.list_backups(uri, remote=remote) == []


def test_a_uri_needs_its_remote_and_a_settings_takes_no_job_arguments(sqlite_db: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{sqlite_db}"
    with pytest.raises(ConfigError) as info:
        dbstash.restore(uri, target=str(tmp_path / "x.db"))
    assert info.value.variable == "remote" and info.value.missing
    settings = Settings.create(uri, remote=str(tmp_path))
    with pytest.raises(ConfigError) as info:
        dbstash.list_backups(settings, remote=str(tmp_path))
    assert info.value.variable == "settings"


def test_target_password_logs_into_a_target_uri_without_one(pg: PgServer, tmp_path: Path) -> None:
    name = f"tp_{os.urandom(3).hex()}"
    pg.createdb(name)
    pg.psql("CREATE TABLE t(id int); INSERT INTO t SELECT generate_series(1, 42)", name)
    source, remote = pg.uri(password=False, database=name), str(tmp_path / "remote")
    secret = tmp_path / "pg-password"
    secret.write_text(pg.password + "\n")
    with ArgvScan(pg.password) as scan:
        made = dbstash.backup(source, remote=remote, password_file=secret)
        into = f"{name}_into"
        pg.createdb(into)
        target = pg.uri(password=False, database=into)
        restored = dbstash.restore(
            source, remote=remote, password_file=secret, target=target, target_password=pg.password
        )
        pg.createdb(f"{name}_scratch")
        drill = dbstash.verify(
            source,
            remote=remote,
            password=pg.password,
            target=pg.uri(password=False, database=f"{name}_scratch"),
            target_password_file=secret,
        )
    assert scan.leaks == [], "the target's password never reaches a child's argv"
    assert restored.name == made.name and pg.psql("SELECT count(*) FROM t", into) == "42"
    assert pg.password not in restored.target
    assert drill.ok and drill.counts == {"public.t": 42}


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"target_password": "s3cr3t-tp", "target_password_file": "/etc/hostname"}, "target_password_file"),
        ({"target_password": "s3cr3t-tp"}, "target_password"),  # no target: the job's own database has its password
        ({"target_password": "s3cr3t-tp", "target": "postgresql://u:pw@127.0.0.1:1/x"}, "target_password"),
        (
            {"target_password_file": "/nonexistent/secret", "target": "postgresql://u@127.0.0.1:1/x"},
            "target_password_file",
        ),
    ],
)
def test_target_password_conflicts_name_the_parameter(kwargs: dict[str, str], parameter: str) -> None:
    # an undefined remote: had the restore listed it first, the error would name remote, not the password
    with pytest.raises(ConfigError) as info:
        dbstash.restore("postgresql://u@127.0.0.1:1/db", remote="nosuch:bucket", **kwargs)  # type: ignore[arg-type]
    assert info.value.variable == parameter, info.value
    assert "s3cr3t-tp" not in str(info.value)

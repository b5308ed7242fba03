"""The library's edges as a Python developer meets them: conflicting or out-of-range arguments are a
ConfigError naming the parameter, an undefined remote is found before the dump, errors name library
parameters (not environment variables), rclone's NOTICE chatter stays out of messages, and the
library raises without logging at ERROR (its caller decides)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import dbstash
from dbstash import ConfigError, RcloneOptions, RetentionPolicy, Settings
from dbstash.errors import DbstashError
from dbstash.storage.rclone_cli import RcloneCliStorage
from dbstash.storage.rclone_uploads import log_text
from tests.support.servers import ArgvScan

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"password": "a", "password_file": "/etc/hostname"}, "password_file"),
        ({"retention": RetentionPolicy(max_files=2), "retention_max_files": 3}, "retention"),
        ({"retention": RetentionPolicy(max_files=2), "retention_keep": {"daily": 3}}, "retention"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"stall_timeout": -5}, "stall_timeout"),
    ],
)
def test_conflicting_or_out_of_range_arguments_name_the_parameter(
    sqlite_db: Path, tmp_path: Path, kwargs: dict[str, object], parameter: str
) -> None:
    remote = tmp_path / "remote"
    with ArgvScan() as scan, pytest.raises(ConfigError) as info:
        dbstash.backup(f"sqlite:///{sqlite_db}", remote=str(remote), **kwargs)  # type: ignore[arg-type]
    assert info.value.variable == parameter, info.value
    assert "sqlite3" not in scan.children and not remote.exists(), "nothing was dumped or uploaded"


def test_a_relative_work_folder_names_temp_dir() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.create("mysql://u@127.0.0.1/db", remote="/x", mode="tar", temp_dir="relative")
    assert info.value.variable == "temp_dir"


def test_zero_and_none_timeouts_mean_no_limit(sqlite_db: Path, tmp_path: Path) -> None:
    for value in (0, None):
        settings = Settings.create(f"sqlite:///{sqlite_db}", remote=str(tmp_path), timeout=value)
        assert settings.timeout is None


def test_an_undefined_remote_is_found_before_the_dump(sqlite_db: Path, tmp_path: Path) -> None:
    conf = tmp_path / "rclone.conf"
    conf.write_text("[local]\ntype = local\n")
    with ArgvScan() as scan, pytest.raises(ConfigError) as info:
        dbstash.backup(f"sqlite:///{sqlite_db}", remote="nosuch:bucket", rclone=RcloneOptions(config_file=str(conf)))
    assert info.value.variable == "remote"
    assert "no remote called 'nosuch'" in str(info.value) and "local" in str(info.value)
    assert "sqlite3" not in scan.children, "the check ran before the dump"
    assert "NOTICE" not in str(info.value)


def test_run_time_input_errors_name_parameters_in_the_library_and_variables_in_the_cli(tmp_path: Path) -> None:
    """Found once the job runs (not by Settings): a SQLite file that is not there, a direct commit
    on a local folder, a drill with no scratch target. The library names its parameters; the CLI
    (flags) and the entrypoint (variables) name theirs."""
    missing, folder = f"sqlite:///{tmp_path / 'gone.db'}", str(tmp_path / "remote")
    cases: list[tuple[dict[str, object], str]] = [
        ({"uri": missing, "remote": folder}, "uri"),
        (
            {"uri": f"sqlite:///{tmp_path / 'gone.db'}", "remote": folder, "rclone": RcloneOptions(commit="direct")},
            "rclone.commit",
        ),
    ]
    for kwargs, parameter in cases:
        with pytest.raises(ConfigError) as info:
            dbstash.backup(**kwargs)  # type: ignore[arg-type]
        assert info.value.variable == parameter, info.value
    with pytest.raises(ConfigError) as drill:
        dbstash.verify("postgresql://app@127.0.0.1:1/app", remote=folder)
    assert drill.value.variable == "target" and drill.value.missing
    assert not Path(folder).exists(), "nothing was uploaded"

    def cli(*args: str, **env: str) -> str:
        base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
        done = subprocess.run(
            [sys.executable, "-m", "dbstash_cli", *args],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        return done.stderr

    assert "DB_URI (--uri): invalid value" in cli("backup", "--uri", missing, "--remote", folder)
    assert "DB_URI: invalid value" in cli("run", DB_URI=missing, RCLONE_REMOTE=folder, BACKUP_SCHEDULE="once")
    sqlite_db = tmp_path / "here.db"
    sqlite_db.write_bytes(b"")
    direct = cli(
        "run", DB_URI=f"sqlite:///{sqlite_db}", RCLONE_REMOTE=folder, RCLONE_COMMIT="direct", BACKUP_SCHEDULE="once"
    )
    assert "RCLONE_COMMIT: invalid value 'direct'" in direct and "rclone.commit" not in direct
    no_target = cli("verify", "--uri", "postgresql://app@127.0.0.1:1/app", "--remote", folder)
    assert "--target (or VERIFY_TARGET_URI): not set" in no_target


def test_rclone_notice_lines_stay_out_of_error_messages(tmp_path: Path) -> None:
    """No config file at all: rclone logs a NOTICE about it before the real error; the message keeps the error."""
    missing = tmp_path / "none.conf"
    store = RcloneCliStorage("nosuch:bucket", RcloneOptions(config_file=str(missing)))
    with pytest.raises(DbstashError) as info:
        anyio.run(store.list)
    text = str(info.value)
    assert "nosuch" in text and "NOTICE" not in text and "Config file" not in text, text


def test_log_text_keeps_rclone_errors_and_drops_its_chatter() -> None:
    text = (
        '2026/12/04 17:55:51 NOTICE: Config file "/root/.config/rclone/rclone.conf" not found - using defaults\n'
        '2026/12/04 17:55:51 CRITICAL: Failed to create file system for "nosuch:bucket/": didn\'t find section\n'
    )
    assert log_text(text).splitlines() == [text.splitlines()[1]]
    json_log = '{"level":"notice","msg":"Config file not found"}\n{"level":"error","msg":"403 Forbidden"}\n'
    assert log_text(json_log) == "error: 403 Forbidden"
    only_chatter = "2026/12/04 17:55:51 NOTICE: something odd\n"
    assert log_text(only_chatter) == only_chatter  # nothing else: keep what there is


def test_the_library_raises_without_logging_at_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database file" * 100)
    with caplog.at_level(logging.DEBUG, logger="dbstash"), pytest.raises(dbstash.DumpFailed) as info:
        dbstash.backup(f"sqlite:///{broken}", remote=str(tmp_path / "remote"))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    # the context a caller logs it with
    assert info.value.context["engine"] == "sqlite" and len(info.value.context["backup_id"]) == 12


def test_an_unconfigured_library_prints_nothing_on_its_own(sqlite_db: Path, tmp_path: Path) -> None:
    """Python's last-resort handler would print dbstash's warnings to stderr; the NullHandler stops it."""
    import subprocess
    import sys

    code = (
        "import dbstash, sys\n"
        "try:\n"
        f"    dbstash.backup('sqlite:///{tmp_path}/missing.db', remote='{tmp_path}/r')\n"
        "except dbstash.ConfigError as e:\n"
        "    print('raised', e.variable)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ)
    assert proc.stdout.startswith("raised "), proc.stdout + proc.stderr
    assert proc.stderr == ""

"""Retention against real remotes: only this job's complete backups, only after success."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

import dbstash
from dbstash import DumpFailed, RcloneOptions
from dbstash.jobs.manifest import MANIFEST_SUFFIX
from dbstash.jobs.naming import partial_name
from tests.support.servers import S3Server
from tests.support.transports import Transport

pytestmark = pytest.mark.integration


def old_name(days: int, db: str = "app") -> str:
    when = datetime.now(UTC) - timedelta(days=days)
    return f"{db}-{when:%Y-%m-%d-%H%M%S}.sql"


def seed(where: str, tmp_path: Path, s3: S3Server, names: list[str]) -> tuple[str, RcloneOptions, list[str]]:
    if where == "local":
        folder = tmp_path / "remote"
        folder.mkdir()
        for n in names:
            (folder / n).write_text("old backup\n")
        return str(folder), RcloneOptions(), names
    folder_name = f"ret-{uuid.uuid4().hex[:8]}"
    path = Path(s3.root) / s3.bucket / folder_name
    path.mkdir(parents=True)
    for n in names:
        (path / n).write_text("old backup\n")
        # the S3 ModTime of these would be "now": the job must read times from the names
    return s3.remote(folder_name), RcloneOptions(config_text=s3.config), names


def listing(remote: str, options: RcloneOptions) -> list[str]:
    async def go() -> list[str]:
        async with dbstash.RcloneCliStorage(remote, options) as st:
            return sorted(e.name for e in await st.list())

    return anyio.run(go)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_retention_deletes_only_this_jobs_old_backups(
    sqlite_db: Path, tmp_path: Path, transport: Transport, where: str
) -> None:
    mine = [old_name(d) for d in (1, 2, 3, 10, 40)]
    others = [
        "other-2020-01-01-000000.sql",
        "app-notes.txt",
        old_name(50, db="other"),
        "app-2020-01-01-000000.dump",
        partial_name(old_name(60), "deadbeef"),
    ]
    remote, _, _ = seed(where, tmp_path, transport.s3, mine + others)
    result = dbstash.backup(
        f"sqlite:///{sqlite_db}", remote=remote, retention_max_files=3, retention_max_days=30, **transport.kwargs()
    )

    async def go() -> list[str]:
        async with transport.storage(remote) as st:
            return sorted(e.name for e in await st.list())

    left = anyio.run(go)
    assert result.name in left
    # newest 3 of mine (the new one + 1 and 2 days old); 3, 10 and 40 days old go (count, count, age)
    assert sorted(result.deleted) == sorted(mine[2:])
    assert set(others) <= set(left), "retention touched files that are not this job's backups"
    assert len([n for n in left if n in mine]) == 2


def test_retention_never_runs_after_a_failed_backup(sqlite_db: Path, tmp_path: Path) -> None:
    remote, options, names = seed("local", tmp_path, None, [old_name(d) for d in (5, 6, 7)])  # type: ignore[arg-type]
    with pytest.raises(DumpFailed):
        # sqlite3 fails at once on an unknown option; retention would otherwise delete two of three
        dbstash.backup(
            f"sqlite:///{sqlite_db}",
            remote=remote,
            rclone=options,
            retention_max_files=1,
            dump_extra_args=["-no-such-option"],
        )
    assert listing(remote, options) == sorted(names)


def test_partial_left_by_a_killed_run_is_ignored(sqlite_db: Path, tmp_path: Path) -> None:
    """A SIGKILLed dbstash leaves at most a partial; the next run neither counts nor deletes it."""
    leftover, yesterday = partial_name(old_name(0), "0badf00d"), old_name(1)
    remote, options, _ = seed("local", tmp_path, None, [leftover, yesterday])  # type: ignore[arg-type]
    result = dbstash.backup(f"sqlite:///{sqlite_db}", remote=remote, rclone=options, retention_max_files=1)
    assert result.deleted == (yesterday,)
    assert listing(remote, options) == sorted([leftover, result.name, result.name + MANIFEST_SUFFIX])

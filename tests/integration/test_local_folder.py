"""A plain local folder: the stream goes through ``rclone rcat``; the metadata (listing, manifest,
rename) is done by the OS, with the results rclone gives (compared with the real ``rclone lsjson``).
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from dbstash.errors import StorageError
from dbstash.jobs.manifest import Manifest, manifest_name
from dbstash.jobs.naming import PARTIAL_MARK
from dbstash.settings.options import RcloneOptions
from dbstash.storage.local import LocalFolder
from dbstash.storage.rclone_cli import RcloneCliStorage

pytestmark = pytest.mark.integration
DBSTASH = [sys.executable, "-m", "dbstash_cli"]


def run_backup(db: Path, remote: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "DB_URI": f"sqlite:///{db}",
        "RCLONE_REMOTE": remote,
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "debug",
        **extra,
    }
    return subprocess.run([*DBSTASH, "backup"], env=env, capture_output=True, text=True, timeout=120)


def test_a_local_backup_needs_no_rclone_for_its_metadata(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "backups"
    done = run_backup(sqlite_db, str(remote))
    assert done.returncode == 0, done.stderr
    for call in ("rclone lsjson", "rclone moveto", "rclone copyto"):
        assert call not in done.stderr, done.stderr
    names = sorted(p.name for p in remote.iterdir())
    assert len(names) == 2 and not [n for n in names if n.endswith(PARTIAL_MARK)], names
    backup = remote / names[0]
    manifest = Manifest.from_json((remote / manifest_name(backup.name)).read_bytes())
    assert manifest.size == backup.stat().st_size
    assert manifest.sha256 == hashlib.sha256(backup.read_bytes()).hexdigest()
    for path in (backup, remote / manifest_name(backup.name)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path  # as rclone stores under dbstash's umask


def test_flags_that_change_local_behaviour_leave_it_all_to_rclone(sqlite_db: Path, tmp_path: Path) -> None:
    remote = tmp_path / "backups"
    done = run_backup(sqlite_db, str(remote), RCLONE_EXTRA_ARGS="--local-no-check-updated")
    assert done.returncode == 0, done.stderr
    assert "rclone lsjson" in done.stderr and "rclone moveto" in done.stderr
    assert len([p for p in remote.iterdir() if not p.name.endswith(PARTIAL_MARK)]) == 2


@pytest.mark.parametrize(
    ("remote", "args", "env", "local"),
    [
        ("/srv/backups", (), {}, True),
        ("backups", (), {}, True),
        ("./a:b", (), {}, True),
        ("/srv/a:b", (), {}, True),
        ("s3:bucket/path", (), {}, False),
        (":local:/srv/backups", (), {}, False),
        ("/srv/backups", ("--local-encoding", "None"), {}, False),
        ("/srv/backups", ("--dry-run",), {}, False),
        ("/srv/backups", ("--backup-dir=/old",), {}, False),
        ("/srv/backups", ("--log-level", "INFO"), {}, True),
        ("/srv/backups", (), {"RCLONE_LOCAL_ENCODING": "None"}, False),
    ],
)
def test_which_remotes_are_plain_local_folders(
    remote: str, args: tuple[str, ...], env: dict[str, str], local: bool
) -> None:
    assert (LocalFolder.for_remote(remote, args, env) is not None) == local


@pytest.mark.parametrize(
    ("name", "handled"),
    [("app-2026.sql.gz", True), ("é ünï.sql", True), (".", False), ("..", False), ("a/b", False), ("x\udcff", False)],
)
def test_names_rclone_would_encode_go_through_rclone(name: str, handled: bool) -> None:
    assert LocalFolder.handles(name) == handled


def test_the_listing_is_the_one_rclone_gives(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "a.sql").write_bytes(b"x" * 1234)
    (folder / "empty.sql").write_bytes(b"")
    (folder / "dir-backup").mkdir()
    (folder / "dir-backup" / "inner").write_bytes(b"y")
    (folder / "link.sql").symlink_to(folder / "a.sql")  # rclone skips symbolic links by default
    (folder / "dangling").symlink_to(tmp_path / "nowhere")
    (folder / ".hidden").write_bytes(b"h")
    os.utime(folder / "a.sql", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))

    async def both() -> tuple[list[tuple[str, int, bool, float]], list[tuple[str, int, bool, float]]]:
        fast = RcloneCliStorage(str(folder))
        slow = RcloneCliStorage(str(folder), RcloneOptions(extra_args=("--local-no-check-updated",)))
        assert fast.local_folder() is not None and slow.local_folder() is None

        def rows(entries: list) -> list[tuple[str, int, bool, float]]:  # type: ignore[type-arg]
            return [(e.name, e.size, e.is_dir, round(e.modtime.timestamp(), 6)) for e in entries]  # order too

        return rows(await fast.list()), rows(await slow.list())

    fast, slow = anyio.run(both)
    assert fast == slow
    assert [r[0] for r in fast] == [".hidden", "a.sql", "dir-backup", "empty.sql"]


def test_a_missing_folder_lists_empty_as_with_rclone(tmp_path: Path) -> None:
    async def main() -> list[object]:
        return list(await RcloneCliStorage(str(tmp_path / "not-yet")).list())

    assert anyio.run(main) == []


def test_metadata_operations_and_their_failures(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()

    async def main() -> None:
        storage = RcloneCliStorage(str(folder))
        await storage.write_verified("m.json", b'{"a": 1}')
        assert (folder / "m.json").read_bytes() == b'{"a": 1}'
        assert [p.name for p in folder.iterdir()] == ["m.json"], "no temporary name is left"
        entry = await storage.stat("m.json")
        assert entry is not None and entry.size == 8 and not entry.is_dir
        assert await storage.stat("missing") is None
        await storage.move("m.json", "n.json")
        assert [p.name for p in folder.iterdir()] == ["n.json"]
        with pytest.raises(StorageError, match="renaming missing to x failed"):
            await storage.move("missing", "x")
        (folder / "occupied").mkdir()  # a folder of the manifest's name: the rename fails
        (folder / "occupied" / "f").write_bytes(b"")
        with pytest.raises(StorageError, match="could not store occupied"):
            await storage.write_verified("occupied", b"1")
        assert sorted(p.name for p in folder.iterdir()) == ["n.json", "occupied"], "the temporary name is gone"

    anyio.run(main)


def test_a_file_renamed_while_listing_does_not_empty_the_listing(tmp_path: Path) -> None:
    # another run renames its temp files in the same folder (same-second runs of one job; CI saw it
    # as "the uploaded object is not on the remote"): an entry gone between readdir and stat is
    # skipped, it never turns the listing into "no folder"
    (tmp_path / "mine.sql").write_bytes(b"x" * 10)
    folder = LocalFolder(str(tmp_path))
    stop = False

    def churn() -> None:
        i = 0
        while not stop:
            path = tmp_path / f"other-{i % 50}.tmp"
            path.write_bytes(b"")
            path.rename(tmp_path / f"other-{i % 50}.done")
            (tmp_path / f"other-{i % 50}.done").unlink()
            i += 1

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        listings = [folder.list() for _ in range(3000)]
    finally:
        stop = True
        thread.join()
    missing = [entries for entries in listings if entries is None or "mine.sql" not in {e.name for e in entries}]
    assert missing == []

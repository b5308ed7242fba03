"""rclone's idle timeout: 15 s for every call but a backup's upload, whose completion an S3-compatible
server may assemble in silence for longer (a 10 GB upload into rclone serve s3 failed with InvalidPart
after a retried completion, see docs/benchmarks.md); the commit's bound grows with the size."""

from __future__ import annotations

from dbstash.storage.rclone_cli import COMMIT_SECONDS_PER_GIB, RcloneCliStorage, RcloneOptions, commit_limit


def _timeout(argv: list[str]) -> str:
    return argv[len(argv) - 1 - argv[::-1].index("--timeout") + 1]  # the last one wins in rclone


def test_uploads_get_rclones_own_idle_timeout_and_other_calls_15s() -> None:
    storage = RcloneCliStorage("/tmp/backups")
    assert _timeout(storage.argv("lsjson", "/tmp/backups")) == "15s"
    assert _timeout(storage.argv("rcat", "/tmp/backups/x", upload=True)) == "5m"


def test_a_users_timeout_still_wins() -> None:
    storage = RcloneCliStorage("/tmp/backups", RcloneOptions(extra_args=("--timeout", "30s")))
    assert _timeout(storage.argv("rcat", "/tmp/backups/x", upload=True)) == "30s"


def test_the_commit_bound_grows_with_the_size() -> None:
    assert commit_limit(45.0, 0) == 45.0
    assert commit_limit(45.0, 10 << 30) == 45.0 + 10 * COMMIT_SECONDS_PER_GIB

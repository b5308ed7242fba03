"""rclone's idle timeout: 15 s for every call but a backup's upload, whose completion an S3-compatible
server may assemble in silence for longer (a 10 GB upload into rclone serve s3 failed with InvalidPart
after a retried completion, see docs/benchmarks.md); the commit's bound grows with the size."""

from __future__ import annotations

import pytest

from dbstash.settings.options import RcloneOptions
from dbstash.storage.rclone_cli import RcloneCliStorage
from dbstash.storage.rclone_uploads import COMMIT_SECONDS_PER_GIB, commit_limit


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


@pytest.mark.parametrize(
    ("remote", "bare", "env"),
    [
        (
            ":s3,provider=AWS,secret_access_key=sk/x+y:bucket/pg",
            ":s3:bucket/pg",
            {"RCLONE_S3_PROVIDER": "AWS", "RCLONE_S3_SECRET_ACCESS_KEY": "sk/x+y"},
        ),
        (
            ":s3,endpoint='http://127.0.0.1:9000',env_auth:b",
            ":s3:b",
            {"RCLONE_S3_ENDPOINT": "http://127.0.0.1:9000", "RCLONE_S3_ENV_AUTH": "true"},
        ),
        ('mys3,secret_access_key="a,b:""c""":bkt/x', "mys3:bkt/x", {"RCLONE_CONFIG_MYS3_SECRET_ACCESS_KEY": 'a,b:"c"'}),
        ("my-remote,key=v:", "my-remote:", {"RCLONE_CONFIG_MY_REMOTE_KEY": "v"}),
    ],
)
def test_connection_string_parameters_become_rclone_environment(remote: str, bare: str, env: dict[str, str]) -> None:
    from dbstash.settings.connstring import parse_connection_string

    parsed = parse_connection_string(remote)
    assert parsed is not None and parsed.remote == bare and parsed.env() == env
    storage = RcloneCliStorage(remote)
    assert storage.remote == bare and all(storage._env()[k] == v for k, v in env.items())


@pytest.mark.parametrize(
    "remote", ["/backups", "./a,b:c", "s3:bucket/x,y=z", ":s3:bucket", "remote:path", ":s3,k='open:b", ":s3,=v:b"]
)
def test_remotes_without_parseable_parameters_are_left_as_they_are(remote: str) -> None:
    from dbstash.settings.connstring import parse_connection_string

    assert parse_connection_string(remote) is None
    assert RcloneCliStorage(remote).remote == remote

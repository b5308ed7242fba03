"""What only the rc transport has: credentials checked at start-up, the daemon dying mid-upload,
redacted error replies, retries for idempotent calls only.

The round-trip, failure and retention tests shared with the CLI transport live in test_postgres,
test_failures and test_retention_remote, parametrized over both transports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

import dbstash
from dbstash import ConfigError, RcloneRcStorage, RcOptions, StorageError, UploadFailed
from dbstash.jobs.manifest import manifest_name
from dbstash.jobs.naming import PARTIAL_MARK
from tests.support.servers import PgServer, S3Server, free_port
from tests.support.transports import SLOW_ARGS, RcDaemon

pytestmark = pytest.mark.integration


def dbstash_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "BACKUP_SCHEDULE": "once", **env}
    return subprocess.run(
        [sys.executable, "-m", "dbstash_cli", "run"], env=full, capture_output=True, text=True, timeout=120
    )


def test_entrypoint_round_trip_through_rcd_with_a_password_file(sqlite_db: Path, tmp_path: Path, rcd: RcDaemon) -> None:
    pw = tmp_path / "rc-pass"
    pw.write_text(rcd.password + "\n")
    remote = tmp_path / "remote"
    proc = dbstash_run(
        {
            "DB_URI": f"sqlite:///{sqlite_db}",
            "RCLONE_REMOTE": str(remote),
            "RCLONE_RC_URL": rcd.url,
            "RCLONE_RC_USER": rcd.user,
            "RCLONE_RC_PASS_FILE": str(pw),
            "LOG_LEVEL": "debug",
        }
    )
    assert proc.returncode == 0, proc.stderr
    assert rcd.password not in proc.stderr + proc.stdout
    name, manifest = sorted(os.listdir(remote))
    assert manifest == manifest_name(name)
    assert name.startswith("app-") and name.endswith(".sql")
    assert (remote / name).read_bytes().rstrip().endswith(b"COMMIT;")
    assert "using the rclone daemon" in proc.stderr


def test_wrong_credentials_fail_at_start_up_with_exit_2(sqlite_db: Path, tmp_path: Path, rcd: RcDaemon) -> None:
    remote = tmp_path / "remote"
    proc = dbstash_run(
        {
            "DB_URI": f"sqlite:///{sqlite_db}",
            "RCLONE_REMOTE": str(remote),
            "RCLONE_RC_URL": rcd.url,
            "RCLONE_RC_USER": rcd.user,
            "RCLONE_RC_PASS": "not-the-rc-password",
        }
    )
    assert proc.returncode == 2, proc.stderr
    assert "RCLONE_RC_USER" in proc.stderr and "not-the-rc-password" not in proc.stderr
    assert not remote.exists()


@pytest.mark.parametrize("status", [404, 200, 405, 500])
def test_a_url_that_is_not_an_rcd_is_a_config_error(sqlite_db: Path, tmp_path: Path, status: int) -> None:
    """Any web server that answers, but not as rclone rcd does (JSON), is named at start-up with exit 2."""
    from tests.support.receivers import HttpReceiver

    web = HttpReceiver(status=status).start()
    try:
        proc = dbstash_run(
            {
                "DB_URI": f"sqlite:///{sqlite_db}",
                "RCLONE_REMOTE": str(tmp_path / "remote"),
                "RCLONE_RC_URL": f"http://127.0.0.1:{web.port}",
            }
        )
    finally:
        web.stop()
    assert proc.returncode == 2 and "RCLONE_RC_URL" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "remote").exists()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"RCLONE_RC_USER": "u"}, "RCLONE_RC_URL"),
        ({"RCLONE_RC_URL": "ftp://127.0.0.1:5572"}, "RCLONE_RC_URL"),
        ({"RCLONE_RC_URL": "http://u:secret@127.0.0.1:5572"}, "RCLONE_RC_URL"),
        ({"RCLONE_RC_URL": "http://127.0.0.1:5572", "RCLONE_RC_PASS_FILE": "/nonexistent"}, "RCLONE_RC_PASS_FILE"),
    ],
)
def test_bad_rc_settings_exit_2(sqlite_db: Path, tmp_path: Path, env: dict[str, str], variable: str) -> None:
    proc = dbstash_run({"DB_URI": f"sqlite:///{sqlite_db}", "RCLONE_REMOTE": str(tmp_path / "r"), **env})
    assert proc.returncode == 2 and variable in proc.stderr
    assert "secret" not in proc.stderr


def test_rcd_unreachable_is_a_failed_run_exit_1(sqlite_db: Path, tmp_path: Path) -> None:
    proc = dbstash_run(
        {
            "DB_URI": f"sqlite:///{sqlite_db}",
            "RCLONE_REMOTE": str(tmp_path / "remote"),
            "RCLONE_RC_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    assert proc.returncode == 1 and "RCLONE_RC_URL" in proc.stderr


@pytest.fixture(scope="module")
def rc_big(pg: PgServer) -> Iterator[str]:
    """A table big enough to stop a run in the middle; dropped after the module, since every later
    test backs up this database and restores it (CI disks can be small)."""
    pg.psql(
        "CREATE TABLE IF NOT EXISTS rc_big AS SELECT g, repeat(md5(g::text), 9) p FROM generate_series(1, 150000) g"
    )
    yield "rc_big"
    pg.psql("DROP TABLE IF EXISTS rc_big")


def test_rcd_killed_mid_upload_leaves_nothing_complete(
    pg: PgServer, rc_big: str, tmp_path: Path, rclone_bin: str, s3: object
) -> None:
    daemon = RcDaemon.start(rclone_bin, "", SLOW_ARGS)
    remote = tmp_path / "remote"
    fired = threading.Event()

    def kill_rcd(done: int) -> None:
        if done >= 3 << 20 and not fired.is_set():
            fired.set()
            daemon.stop(9)

    try:
        with pytest.raises((UploadFailed, StorageError)):
            dbstash.backup(pg.uri(), remote=str(remote), rc=daemon.options(), progress=kill_rcd)
    finally:
        daemon.destroy()
    assert fired.is_set()
    left = os.listdir(remote) if remote.exists() else []
    # the daemon died holding the partial: at most that name is left, never a complete-looking one
    assert all(n.endswith(PARTIAL_MARK) for n in left), left


def test_rcd_killed_at_the_final_move_leaves_only_whole_backups(
    pg: PgServer, rc_big: str, rclone_bin: str, s3: S3Server
) -> None:
    """SIGKILL of rcd the moment the manifest is stored, i.e. as the server-side move starts (S3: a
    copy and a delete). The run fails; whatever is under a final name then is whole: its bytes are
    those its manifest names (docs/cli.md, exit 1: the move may have finished on the server)."""
    import hashlib

    from dbstash.jobs.manifest import MANIFEST_SUFFIX, Manifest

    folder = f"mv-{os.urandom(4).hex()}"
    path = Path(s3.root) / s3.bucket / folder
    daemon = RcDaemon.start(rclone_bin, s3.config)
    fired = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if path.is_dir() and any(n.endswith(MANIFEST_SUFFIX) for n in os.listdir(path)):
                daemon.stop(9)
                fired.set()
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises((UploadFailed, StorageError)):
            dbstash.backup(pg.uri(), remote=s3.remote(folder), rc=daemon.options(op_timeout=10))
    finally:
        stop.set()
        watcher.join()
        daemon.destroy()
    assert fired.is_set()
    names = s3.files(folder)
    finals = [n for n in names if not n.endswith(MANIFEST_SUFFIX) and PARTIAL_MARK not in n]
    assert len(finals) <= 1, names
    for name in finals:  # the move finished on the server: a valid backup
        manifest = Manifest.from_json((path / manifest_name(name)).read_bytes())
        data = (path / name).read_bytes()
        assert len(data) == manifest.size and hashlib.sha256(data).hexdigest() == manifest.sha256
    assert finals or any(PARTIAL_MARK in n for n in names), names  # else the full-size partial is left


def test_rc_error_replies_are_redacted(sqlite_db: Path, rcd: RcDaemon) -> None:
    remote = ":s3,provider=Rclone,access_key_id=AKIDX,secret_access_key=TOPSECRET-rc,endpoint=http://127.0.0.1:1:b"
    with pytest.raises(dbstash.DbstashError) as info:
        dbstash.backup(f"sqlite:///{sqlite_db}", remote=remote, rc=rcd.options(op_timeout=20))
    text = str(info.value) + str(getattr(info.value, "stderr_tail", ""))
    assert "TOPSECRET-rc" not in text and "AKIDX" not in text


class FlakyRcd:
    """A stand-in daemon answering 503 to the first *failures* calls of each path, then success."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0].lstrip("/")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                n = outer.calls[path] = outer.calls.get(path, 0) + 1
                ok = n > outer.failures and path != "operations/uploadfile"
                body = json.dumps({"list": [], "version": "v-test"} if ok else {"error": "busy", "status": 503})
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())
                if path == "operations/uploadfile":
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                return None

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky() -> Iterator[FlakyRcd]:
    server = FlakyRcd(failures=2)
    yield server
    server.stop()


def test_idempotent_calls_are_retried_on_5xx(flaky: FlakyRcd) -> None:
    """Not a mock of rclone: a real HTTP server that fails twice, to prove the retry policy."""

    async def go() -> None:
        async with RcloneRcStorage("/x", RcOptions(f"http://127.0.0.1:{flaky.port}")) as st:
            assert await st.list() == []

    anyio.run(go)
    assert flaky.calls["rc/noopauth"] == 3 and flaky.calls["operations/list"] == 3


def test_the_upload_is_never_retried(flaky: FlakyRcd, sqlite_db: Path) -> None:
    with pytest.raises(UploadFailed):
        dbstash.backup(f"sqlite:///{sqlite_db}", remote="/x", rc=RcOptions(f"http://127.0.0.1:{flaky.port}"))
    assert flaky.calls["operations/uploadfile"] == 1


def test_wrong_rc_credentials_name_the_rc_parameter_in_the_library(sqlite_db: Path, rcd: RcDaemon) -> None:
    with pytest.raises(ConfigError) as info:
        dbstash.backup(f"sqlite:///{sqlite_db}", remote="/tmp/never", rc=RcOptions(rcd.url, "dbstash", "wrong"))
    assert info.value.variable == "rc" and "RCLONE_" not in str(info.value)
    assert not os.path.exists("/tmp/never")

"""The built images, run as an operator runs them (podman; no Docker engine exists on these machines).

``scripts/images.sh`` (``make images``, called by the README's test command) builds every image this machine
can build from the repository's own Dockerfiles, on a stand-in ``debian:bookworm-slim`` made by mmdebstrap,
with the Debian client source; it writes ``.cache/containers/images.json``, which this suite reads. Each
image then runs against the suite's real servers on the host network and ``rclone serve s3``, with the Helm
chart's pod settings (uid 10001, read-only root, a tmpfs ``/tmp``, no capabilities) and its secrets mounted
as files (``*_FILE``). Where no container engine can run, images.json says why and this module skips with
that one reason.

Driven with the podman CLI, not pytest-docker: pytest-docker drives ``docker compose`` through a Docker API
socket (podman would need its API service and a compose binary, neither installable here from apt without
more moving parts); each test here is one ``podman run`` of the real image, which is what an operator does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

import dbstash
from dbstash import RcloneOptions, Settings
from dbstash.jobs.manifest import MANIFEST_SUFFIX
from tests.support.cases import EngineCase, MariaDbCase, RedisCase
from tests.support.dbservers import MariaDbServer, RedisServer
from tests.support.servers import PgServer, S3Server, free_port

ROOT = Path(__file__).resolve().parents[2]
STATUS = ROOT / ".cache" / "containers" / "images.json"
pytestmark = pytest.mark.containers


def _status() -> dict[str, Any]:
    if not STATUS.is_file():
        pytest.skip(
            "the images are not built: run `make images` (scripts/images.sh; the README's test command runs it)",
            allow_module_level=True,
        )
    status: dict[str, Any] = json.loads(STATUS.read_text())
    if "reason" in status:
        pytest.skip(f"no container engine can run here: {status['reason']}", allow_module_level=True)
    return status


STATUS_DATA = _status()
ENV = {**os.environ, "CONTAINERS_CONF": STATUS_DATA["containers_conf"]}
PLAN = {b["tag"]: b for b in STATUS_DATA["plan"]["build"]}
IMAGES = {i["tag"]: i for i in STATUS_DATA["images"]}
#: what each image is named in the test ids: the tag, the client source and the base it was built on
IDS = {t: f"{t}/{PLAN[t]['build_args'][-1].split('=')[1]}-clients/{STATUS_DATA['base_kind']}" for t in IMAGES}
#: the Helm chart's pod settings (charts/dbstash: runAsUser 10001, readOnlyRootFilesystem, drop ALL, /tmp emptyDir)
POD = ["--user", "10001", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
#: each engine's dump tool and how it prints its version
VERSION_OF = {
    "pg": ["pg_dump", "--version"],
    "mariadb": ["mariadb-dump", "--version"],
    "redis": ["redis-cli", "--version"],
    "sqlite": ["sqlite3", "--version"],
}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])}... exit {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def test_every_image_this_machine_can_build_was_built() -> None:
    """sqlite-3, pg-15, mariadb-10 (10.11) and redis-7 at least, from the repository's Dockerfiles."""
    assert {"sqlite-3", "pg-15", "mariadb-10", "redis-7"} <= set(IMAGES)
    assert set(IMAGES) == set(PLAN)
    reasons = {n["tag"]: n["reason"] for n in STATUS_DATA["plan"]["not_built"]}
    assert {"mongo-7", "mysql-8", "pg-16"} <= set(reasons) and all(reasons.values())


# -- the cases: real data on the suite's servers, restored on the host by dbstash itself --------------------------
@dataclass
class PgCase:
    """PostgreSQL (the suite's server): a fresh database per test."""

    server: PgServer
    database: str = ""

    def __post_init__(self) -> None:
        self.database = f"img_{uuid.uuid4().hex[:8]}"
        self.server.createdb(self.database)

    @property
    def password(self) -> str:
        return self.server.password

    def uri(self) -> str:
        return self.server.uri(database=self.database)

    def seed(self) -> None:
        self.server.psql(
            "CREATE TABLE items(id int PRIMARY KEY, note text);"
            "INSERT INTO items SELECT i, 'é '' \" ;' || i FROM generate_series(1, 3000) i;",
            self.database,
        )

    def seed_big(self) -> None:
        self.server.psql(
            "CREATE TABLE big AS SELECT i, repeat(md5(random()::text), 8) AS pad FROM generate_series(1, 150000) i;",
            self.database,
        )

    def snapshot(self, database: str | None = None) -> Any:
        query = "SELECT count(*), sum(id), md5(string_agg(note, ',' ORDER BY id)) FROM items"
        return self.server.psql(query, database or self.database)

    def fresh_target(self, directory: str) -> str:
        target = f"img_restore_{uuid.uuid4().hex[:8]}"
        self.server.createdb(target)
        return self.server.uri(database=target)

    def target_snapshot(self, target: str) -> Any:
        return self.snapshot(target.rsplit("/", 1)[1])

    def mounts(self) -> list[str]:
        return []

    def destroy(self) -> None:
        pass


@dataclass
class SqliteCase:
    """A SQLite file in a folder mounted at the same path in the container (uid 10001 may write its journal)."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder.mkdir(mode=0o777, exist_ok=True)
        os.chmod(self.folder, 0o777)
        self.path = self.folder / "app.db"

    password = "no-password-for-sqlite"

    def uri(self) -> str:
        return f"sqlite:///{self.path}"

    def seed(self) -> None:
        con = sqlite3.connect(self.path)
        con.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, note TEXT)")
        con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"é ' \" ; {i}") for i in range(3000)])
        con.commit()
        con.close()
        os.chmod(self.path, 0o666)

    def seed_big(self) -> None:
        con = sqlite3.connect(self.path)
        rows = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000) SELECT i FROM n"
        con.execute(f"CREATE TABLE big AS SELECT i, hex(randomblob(500)) AS pad FROM ({rows})")
        con.commit()
        con.close()

    def snapshot(self, path: Path | None = None) -> Any:
        con = sqlite3.connect(path or self.path)
        try:
            return con.execute("SELECT count(*), sum(id), group_concat(note) FROM items").fetchall()
        finally:
            con.close()

    def fresh_target(self, directory: str) -> str:
        return os.path.join(directory, f"restored-{uuid.uuid4().hex[:6]}.db")

    def target_snapshot(self, target: str) -> Any:
        return self.snapshot(Path(target))

    def mounts(self) -> list[str]:
        return ["-v", f"{self.folder}:{self.folder}"]

    def destroy(self) -> None:
        pass


class _EngineCase:
    """The suite's MariaDB and Redis cases (tests/support/cases.py), with nothing to mount."""

    def __init__(self, case: EngineCase) -> None:
        self.case = case

    def __getattr__(self, name: str) -> Any:
        return getattr(self.case, name)

    def uri(self) -> str:
        return self.case.uri()

    def mounts(self) -> list[str]:
        return []


@pytest.fixture(params=sorted(IMAGES), ids=[IDS[t] for t in sorted(IMAGES)])
def image(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {**IMAGES[request.param], **PLAN[request.param]}


@pytest.fixture
def case(image: dict[str, Any], request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    engine = image["engine"]
    redis: RedisServer | None = None
    made: Any
    if engine == "pg":
        made = PgCase(request.getfixturevalue("pg"))
    elif engine == "sqlite":
        made = SqliteCase(tmp_path / "data")
    elif engine == "mariadb":
        server: MariaDbServer = request.getfixturevalue("mariadb")
        made = _EngineCase(MariaDbCase(server, "mariadb"))
    else:
        redis = RedisServer.start()  # its own: the big seed must not reach the session server's other tests
        made = _EngineCase(RedisCase(redis))
    made.seed()
    yield made
    made.destroy()
    if redis is not None:
        redis.destroy()


@pytest.fixture
def secrets(case: Any, s3: S3Server, tmp_path: Path) -> Path:
    """The connection URI (with its password) and the rclone.conf (with the S3 secret), as mounted files."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "db_uri").write_text(case.uri() + "\n")
    (folder / "rclone.conf").write_text(s3.config)
    for path in (folder, *folder.iterdir()):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # readable by uid 10001, as Docker secrets are
    return folder


def run_args(case: Any, secrets: Path, remote: str, *extra: str) -> list[str]:
    """``podman run`` arguments as an operator writes them: host network, the pod settings, secrets as files."""
    env = {
        "DB_URI_FILE": "/run/secrets/db_uri",
        "RCLONE_CONFIG_FILE": "/run/secrets/rclone.conf",
        "RCLONE_REMOTE": remote,
    }
    return [
        "--network", "host", *POD, "-v", f"{secrets}:/run/secrets:ro", *case.mounts(),
        *(a for k, v in env.items() for a in ("-e", f"{k}={v}")), *extra,
    ]  # fmt: skip


def host_settings(case: Any, s3: S3Server, folder: str) -> Settings:
    """The same job as seen from the host: what restores and lists the container's backups."""
    return Settings.create(case.uri(), remote=s3.remote(folder), rclone=RcloneOptions(config_text=s3.config))


def assert_no_secret(text: str, case: Any, s3: S3Server) -> None:
    for secret in (case.password, s3.secret_key):
        assert secret not in text


# -- the image itself ------------------------------------------------------------------------------------
def test_the_ci_smoke_script_passes(image: dict[str, Any]) -> None:
    """scripts/smoke-image.sh, the same script CI's image job runs (with docker) on every image it builds."""
    spec = importlib.util.spec_from_file_location("dbstash_matrix", ROOT / "containers" / "matrix.py")
    assert spec is not None and spec.loader is not None
    matrix = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(matrix)
    uri = matrix.SMOKE_URIS[image["engine"]]  # the matrix's own dry-run URI, as CI passes it
    out = subprocess.run(
        [str(ROOT / "scripts" / "smoke-image.sh"), "podman", image["image"], uri],
        env=ENV, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"smoke-image: {image['image']}: ok" in out.stdout


def test_client_tools_from_debian_and_the_base_it_was_built_on(image: dict[str, Any]) -> None:
    out = podman("run", "--rm", "--network", "none", "--entrypoint", VERSION_OF[image["engine"]][0],
                 image["image"], *VERSION_OF[image["engine"]][1:])  # fmt: skip
    version = image["client_version"]
    assert f" {version}." in f" {out.stdout}" or f"Distrib {version}." in out.stdout, out.stdout
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Config.Labels}}", image["image"]).stdout)
    assert labels["org.dbstash.client-source"] == "debian"
    assert labels["org.dbstash.engine-major"] == image["tag"].split("-")[1]
    if STATUS_DATA["base_kind"] == "mmdebstrap-minbase-bookworm":
        assert labels["org.dbstash.stand-in"] == "mmdebstrap-minbase-bookworm"
    # Debian's python3, not a CPython of the image's own
    py = podman("run", "--rm", "--network", "none", "--entrypoint", "python3", image["image"], "-c",
                "import sys; print(sys.executable, sys.version_info[:2])")  # fmt: skip
    assert py.stdout.startswith("/opt/dbstash/bin/python3 (3, 11)"), py.stdout


def test_the_build_configuration_stays_out_of_the_image(image: dict[str, Any]) -> None:
    """The host's pip configuration was mounted for the build only: no file of it, no trace in the history."""
    out = podman("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image["image"], "-c",
                 "cat /etc/pip.conf /etc/pip-ca.pem 2>/dev/null | wc -c; ls /wheels 2>&1 | head -1")  # fmt: skip
    size, wheels = out.stdout.split("\n", 1)
    assert size.strip() == "0", "the build's pip.conf or certificate bundle is in the image"
    assert "No such file" in wheels, "the wheel folder was removed"
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", image["image"]).stdout
    inspect = podman("image", "inspect", image["image"]).stdout
    for text in (history, inspect):
        assert "pip-ca.pem" not in text and "PIP_" not in text and "index-url" not in text


def test_the_debian_client_source_refuses_a_major_debian_does_not_ship() -> None:
    """CLIENT_SOURCE=debian with ENGINE_MAJOR=16: the build fails and says why (Debian bookworm ships 15)."""
    if "pg-15" not in IMAGES:
        pytest.fail("pg-15 was not built")
    out = podman(
        "build", "--pull=never", "--format", "docker", *STATUS_DATA["build_mounts"],
        "-f", str(ROOT / "containers" / "Dockerfile.pg"),
        "--build-arg", "ENGINE_MAJOR=16", "--build-arg", "CLIENT_SOURCE=debian",
        "-t", "localhost/dbstash:refused", str(ROOT), timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode != 0
    assert "Debian bookworm has no postgresql-client-16 (it ships 15): use CLIENT_SOURCE=vendor" in out.stderr
    assert podman("image", "exists", "localhost/dbstash:refused", check=False).returncode != 0


# -- as an operator runs it --------------------------------------------------------------------------------
def test_once_backup_restored_on_the_host(image: dict[str, Any], case: Any, secrets: Path, s3: S3Server,
                                          tmp_path: Path) -> None:  # fmt: skip
    """BACKUP_SCHEDULE=once into rclone serve s3 as uid 10001 with a read-only root and no capabilities; the
    host's dbstash restores it (checksum checked) and every row is back."""
    folder = f"img-{image['tag']}-{uuid.uuid4().hex[:6]}"
    name = f"once-{uuid.uuid4().hex[:6]}"
    before = case.snapshot()
    run = podman("run", "--name", name, *run_args(case, secrets, s3.remote(folder), "-e", "BACKUP_SCHEDULE=once"),
                 image["image"], timeout=300, check=False)  # fmt: skip
    try:
        assert run.returncode == 0, run.stdout + run.stderr
        assert_no_secret(run.stdout + run.stderr, case, s3)
        assert_no_secret(podman("inspect", name).stdout, case, s3)  # secrets are files, not environment
    finally:
        podman("rm", "-f", name, check=False)
    files = s3.files(folder)
    assert [f for f in files if f.endswith(MANIFEST_SUFFIX)], files
    settings = host_settings(case, s3, folder)
    target = case.fresh_target(str(tmp_path))
    result = dbstash.restore(settings, target=target)
    assert result.checksum_verified
    assert case.target_snapshot(target) == before


def test_service_mode_healthz_healthcheck_and_a_clean_stop(image: dict[str, Any], case: Any, secrets: Path,
                                                           s3: S3Server) -> None:  # fmt: skip
    """The scheduler with BACKUP_ON_START: /healthz reports the run, the image's HEALTHCHECK passes, and
    SIGTERM between runs (podman stop, Docker's 10 s grace) ends it with exit 0 well within the grace."""
    folder, name, port = f"svc-{image['tag']}-{uuid.uuid4().hex[:6]}", f"svc-{uuid.uuid4().hex[:6]}", free_port()
    extra = ["-e", "BACKUP_SCHEDULE=0 2 * * *", "-e", "BACKUP_ON_START=true",
             "-e", "HEALTH_ADDR=127.0.0.1", "-e", f"HEALTH_PORT={port}", "--detach"]  # fmt: skip
    podman("run", "--name", name, *run_args(case, secrets, s3.remote(folder), *extra), image["image"])
    try:
        body: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            except requests.RequestException:
                body = {}
            if body.get("last_run", {}).get("status") == "success":
                break
            time.sleep(0.5)
        assert body.get("status") == "ok" and body["last_run"]["status"] == "success", body
        assert body["next_run"] and body["running"] is False
        health = podman("healthcheck", "run", name, check=False)
        assert health.returncode == 0, health.stdout + health.stderr
        started = time.monotonic()
        podman("stop", "--time", "10", name, timeout=60)
        took = time.monotonic() - started
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0" and took < 10, (code, took, podman("logs", name).stderr[-2000:])
        assert_no_secret(podman("logs", name).stdout + podman("logs", name).stderr, case, s3)
    finally:
        podman("rm", "-f", name, check=False)
    assert [f for f in s3.files(folder) if f.endswith(MANIFEST_SUFFIX)]


def test_sigterm_mid_backup_leaves_nothing_complete_looking(image: dict[str, Any], case: Any, secrets: Path,
                                                            s3: S3Server) -> None:  # fmt: skip
    """podman stop during a throttled upload: the container ends within the 10 s grace with exit 1 (a backup
    that was stopped failed; docs/service.md), and nothing on the remote looks like a backup."""
    case.seed_big()
    folder, name = f"term-{image['tag']}-{uuid.uuid4().hex[:6]}", f"term-{uuid.uuid4().hex[:6]}"
    extra = ["-e", "BACKUP_SCHEDULE=once", "-e", "RCLONE_EXTRA_ARGS=--bwlimit 1M --buffer-size 0", "--detach"]
    podman("run", "--name", name, *run_args(case, secrets, s3.remote(folder), *extra), image["image"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "backup started" not in podman("logs", name).stderr:
            time.sleep(0.2)
        time.sleep(3)  # mid-stream: at 1 MB/s the upload has megabytes to go
        assert podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"
        started = time.monotonic()
        podman("stop", "--time", "10", name, timeout=60)
        took = time.monotonic() - started
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        logs = podman("logs", name).stderr
        assert code == "1" and took < 10, (code, took, logs[-2000:])
        assert "backup started" in logs and "received SIGTERM: aborting the backup" in logs, logs[-2000:]
    finally:
        podman("rm", "-f", name, check=False)
    files = s3.files(folder)
    assert not [f for f in files if f.endswith(MANIFEST_SUFFIX)], files
    assert not [b for b in dbstash.list_backups(host_settings(case, s3, folder)) if b.complete]

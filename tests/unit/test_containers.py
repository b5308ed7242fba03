"""Images and CI, checked without a Docker engine (none exists on these machines): hadolint on every
Dockerfile, actionlint on the workflow, the tag matrix against the spec's schema, and the deployment
examples (Compose, Kubernetes) parsed and fed to the real settings loader."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbstash import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "containers"
GO_BIN = ROOT / ".cache" / "go-bin"
#: Every tag the spec names, and the two special ones.
SPEC_TAGS = {
    "pg-15", "pg-16", "pg-17", "mongo-6", "mongo-7", "mongo-8", "mysql-8", "mysql-9",
    "mariadb-10", "mariadb-11", "redis-7", "redis-8", "sqlite-3", "pg-latest", "mongo-latest",
}  # fmt: skip


def _matrix_module() -> Any:
    spec = importlib.util.spec_from_file_location("dbstash_matrix", CONTAINERS / "matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    found = found or (str(GO_BIN / name) if (GO_BIN / name).exists() else None)
    if found is None:
        pytest.fail(f"{name} is not installed: run the README's test command (it installs it)")
    return found


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in CONTAINERS.glob("Dockerfile.*")))
def test_hadolint(dockerfile: str) -> None:
    out = subprocess.run([_tool("hadolint"), str(CONTAINERS / dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint() -> None:
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    out = subprocess.run([_tool("actionlint"), *workflows], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_matrix_is_the_spec_tag_schema() -> None:
    m = _matrix_module()
    data = m.load()
    assert m.problems(data) == []
    rows = m.matrix(data)
    tags = {t.rsplit(":", 1)[1] for r in rows for t in r["tags"].split(",")}
    assert tags == SPEC_TAGS
    assert "latest" not in tags
    for r in rows:
        assert re.fullmatch(r"(pg|mongo|mysql|mariadb|redis|sqlite)-\d+", r["tag"])
        assert r["platforms"] == "linux/amd64,linux/arm64"
        assert (ROOT / r["dockerfile"]).is_file()
        # the smoke test's URI really is this engine's, as the dry run will parse it
        assert Settings.from_env({"DB_URI": r["smoke_uri"], "RCLONE_REMOTE": "/tmp/x"}).engine_key == r["engine"]
    referenced = {Path(r["dockerfile"]).name for r in rows}
    assert referenced == {p.name for p in CONTAINERS.glob("Dockerfile.*")}, "every Dockerfile is built"
    # the command the workflow runs prints the same matrix
    out = subprocess.run([sys.executable, str(CONTAINERS / "matrix.py")], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"include": rows}


def test_schema_violations_are_caught() -> None:
    m = _matrix_module()
    bad = {
        "registry": "r",
        "platforms": ["linux/amd64"],
        "image": [
            {"engine": "pg", "version": "16", "dockerfile": "Dockerfile.pg", "also": ["latest"]},
            {"engine": "redis", "version": "7", "dockerfile": "Dockerfile.redis", "also": ["redis-latest"]},
            {"engine": "pg", "version": "16", "dockerfile": "Dockerfile.nope"},
        ],
    }
    found = "\n".join(m.problems(bad))
    assert "latest: not <engine>-<major>" in found
    assert "redis-latest: only pg-latest and mongo-latest" in found
    assert "pg-16: used twice" in found and "Dockerfile.nope" in found


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in CONTAINERS.glob("Dockerfile.*")))
def test_every_image_runs_dbstash_as_pid_1_non_root_with_a_healthcheck(dockerfile: str) -> None:
    text = (CONTAINERS / dockerfile).read_text()
    engine = dockerfile.split(".", 1)[1]
    assert 'ENTRYPOINT ["dbstash", "run"]' in text  # exec form: signals reach dbstash
    assert re.search(r"^USER 10001$", text, re.MULTILINE)
    assert "HEALTHCHECK" in text and '"dbstash", "healthcheck"' in text
    assert f"DB_ENGINE={engine}" in text
    extras = "[rclone,mongo,apprise]" if engine == "mongo" else "[rclone,apprise]"
    assert extras in text, (
        "rclone and apprise come with the image (pymongo with the Mongo ones, for restore and verify)"
    )
    assert re.search(r"install .*\bage\b|/usr/bin/age ", text), "age (BACKUP_ENCRYPT=age) comes with the image"
    assert text.count("FROM ") >= 2, "multi-stage: the wheel is built apart"


def test_workflow_builds_the_generated_matrix_and_smoke_tests_each_image() -> None:
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "build.yml").read_text())
    jobs = wf["jobs"]
    assert "make test" in json.dumps(jobs["test"])
    assert "containers/matrix.py --check" in json.dumps(jobs["matrix"])
    assert jobs["image"]["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
    steps = json.dumps(jobs["image"]["steps"])
    # the smoke script the suite runs on its own builds (tests/containers): one script, no drift
    assert "scripts/smoke-image.sh docker dbstash:smoke" in steps
    smoke = (ROOT / "scripts" / "smoke-image.sh").read_text()
    assert "--version" in smoke and "DRY_RUN=true" in smoke and "10001" in smoke and "--read-only" in smoke
    assert "${{ matrix.platforms }}" in steps


# -- deployment examples -----------------------------------------------------------------------------
def _env_of(container_env: Any) -> dict[str, str]:
    if isinstance(container_env, dict):
        return {k: str(v) for k, v in container_env.items()}
    return {e["name"]: str(e["value"]) for e in container_env if "value" in e}


def test_compose_example_is_valid_for_the_settings_loader(tmp_path: Path) -> None:
    m = _matrix_module()
    tags = {t.rsplit(":", 1)[1] for r in m.matrix(m.load()) for t in r["tags"].split(",")}
    compose = yaml.safe_load((ROOT / "docker-compose.example.yml").read_text())
    files = {
        "pg_uri": "postgresql://app:pw@postgres:5432/app\n",
        "mongo_password": "mongo-pw\n",
        "rclone_conf": "[s3]\ntype = s3\nprovider = AWS\n",
    }
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("./secrets/")
        (tmp_path / name).write_text(files[name])
    for service in compose["services"].values():
        assert service["image"].rsplit(":", 1)[1] in tags
        env = _env_of(service["environment"])
        for name in service["secrets"]:
            assert name in compose["secrets"]
        # mounted secrets: /run/secrets/<name> -> the test's files; ${VARS} from the host's .env
        env = {k: v.replace("/run/secrets/", f"{tmp_path}/") for k, v in env.items()}
        env = {k: "https://hooks.slack.com/services/T/B/X" if v.startswith("${") else v for k, v in env.items()}
        engine = service["image"].rsplit(":", 1)[1].split("-")[0]
        env.setdefault("DB_ENGINE", engine)  # the image's own ENV (see the Dockerfiles)
        settings = Settings.from_env(env)
        assert settings.engine_key == engine


def test_kubernetes_cronjob_example(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((ROOT / "examples" / "kubernetes" / "cronjob.yaml").read_text()))
    secret = next(d for d in docs if d["kind"] == "Secret")
    cron = next(d for d in docs if d["kind"] == "CronJob")
    assert cron["apiVersion"] == "batch/v1" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    env = _env_of(container["env"])
    assert env["BACKUP_SCHEDULE"] == "once"
    assert not any("change-me" in v for v in env.values()), "secrets stay in the Secret, mounted as files"
    mount = container["volumeMounts"][0]["mountPath"]
    assert pod["volumes"][0]["secret"]["secretName"] == secret["metadata"]["name"]
    for key, value in secret["stringData"].items():
        (tmp_path / key).write_text(value)
    env = {k: v.replace(mount, str(tmp_path)) for k, v in env.items()}
    settings = Settings.from_env(env)
    assert settings.engine_key == "pg" and settings.service.schedule == "once"
    assert settings.retention.keep_rules == {"daily": 7, "weekly": 4}
    with pytest.raises(ConfigError):
        Settings.from_env({**env, "BACKUP_SCHEDULE": "nightly"})


def test_the_local_plan_builds_what_debian_ships_and_says_why_not_the_rest() -> None:
    """scripts/images.sh builds `matrix.py --local`: the tags whose major Debian bookworm ships, with the
    Debian client source; every other image is listed with its reason."""
    m = _matrix_module()
    data = m.load()
    plan = m.local(data)
    built = {b["tag"]: b for b in plan["build"]}
    assert set(built) == {"sqlite-3", "pg-15", "mariadb-10", "redis-7"}
    for b in built.values():
        assert b["build_args"][-1] == "CLIENT_SOURCE=debian" and (ROOT / b["dockerfile"]).is_file()
    assert "ENGINE_MAJOR=15" in built["pg-15"]["build_args"] and built["mariadb-10"]["client_version"] == "10.11"
    reasons = {n["tag"]: n["reason"] for n in plan["not_built"]}
    assert set(reasons) | set(built) == {r["tag"] for r in m.matrix(data)}
    assert "Oracle Linux" in reasons["mysql-8"] and "repo.mongodb.org" in reasons["mongo-7"]
    assert "apt.postgresql.org" in reasons["pg-16"]


@pytest.mark.parametrize("dockerfile", ["Dockerfile.pg", "Dockerfile.mariadb", "Dockerfile.redis"])
def test_client_source_is_a_build_argument_with_a_checked_version(dockerfile: str) -> None:
    text = (CONTAINERS / dockerfile).read_text()
    assert "ARG CLIENT_SOURCE=vendor" in text  # the release images keep the vendor's tools
    assert "vendor)" in text and "debian)" in text and "CLIENT_SOURCE must be vendor or debian" in text
    assert "ARG BASE_IMAGE=debian:bookworm-slim" in text and "python3-venv" in text

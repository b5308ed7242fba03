"""The Helm chart (charts/dbstash): helm lint and helm template in both modes, the rendered pods' security
and secrets, and the rendered environment fed to the real settings loader (as the K8s example's is)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbstash import ConfigError, Settings
from tests.unit.test_containers import ROOT, _env_of, _tool

CHART = ROOT / "charts" / "dbstash"
SECRETS = [
    "secrets[0].variable=DB_URI_FILE",
    "secrets[0].secretName=dbstash-pg",
    "secrets[0].key=db_uri",
    "secrets[1].variable=RCLONE_CONFIG_FILE",
    "secrets[1].secretName=dbstash-pg",
    "secrets[1].key=rclone.conf",
    "secrets[2].variable=NOTIFY_URLS_FILE",
    "secrets[2].secretName=dbstash-notify",
    "secrets[2].key=urls",
]
SECRET_DATA = {
    "dbstash-pg": {
        "db_uri": "postgresql://backup:s3cret-pw@postgres.default.svc:5432/app",
        "rclone.conf": "[s3]\ntype = s3\nprovider = AWS\naccess_key_id = AKID\nsecret_access_key = s3cret-key\n",
    },
    "dbstash-notify": {"urls": "json://hooks.example.com/dbstash-token-123"},
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([_tool("helm"), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def render(*sets: str) -> list[dict[str, Any]]:
    args = [a for s in (*SECRETS, *sets) for a in ("--set", s)]
    out = helm("template", "backup", str(CHART), *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod_of(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(doc["spec"]["template"]["spec"])


def loaded_settings(pod: dict[str, Any], tmp_path: Path) -> Settings:
    """The container's env, with each mounted Secret written where the pod would see it, through the real loader."""
    (container,) = pod["containers"]
    env = _env_of(container["env"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in pod["volumes"]:
        if "secret" not in volume:
            continue
        name = volume["secret"]["secretName"]
        folder = tmp_path / name
        folder.mkdir()
        for item in volume["secret"]["items"]:
            (folder / item["path"]).write_text(SECRET_DATA[name][item["key"]])
        env = {k: v.replace(mounts[volume["name"]], str(folder)) for k, v in env.items()}
    return Settings.from_env(env)


@pytest.mark.parametrize("mode", ["cronjob", "service"])
def test_helm_lint(mode: str) -> None:
    done = helm("lint", str(CHART), "--strict", "--set", f"mode={mode}", *[a for s in SECRETS for a in ("--set", s)])
    assert "0 chart(s) failed" in done.stdout


def test_cronjob_mode(tmp_path: Path) -> None:
    docs = render()
    assert [d["kind"] for d in docs] == ["CronJob"]
    cron = docs[0]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid" and cron["spec"]["schedule"] == "0 2 * * *"
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    pod = pod_of(cron)
    assert pod["restartPolicy"] == "Never"
    _secure(pod)
    settings = loaded_settings(pod, tmp_path)
    assert settings.service.schedule == "once" and settings.engine_key == "pg"
    assert settings.retention.keep_rules == {"daily": 7, "weekly": 4}
    assert [n.kind for n in settings.notifiers()] == ["apprise"]


def test_service_mode(tmp_path: Path) -> None:
    docs = render(
        "mode=service", "service.schedule=0 */6 * * *", "service.metrics.annotations.prometheus\\.io/scrape=true"
    )
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service"}
    deployment, service = kinds["Deployment"], kinds["Service"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = pod_of(deployment)
    _secure(pod)
    (container,) = pod["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080}]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    settings = loaded_settings(pod, tmp_path)
    assert settings.service.schedule == "0 */6 * * *" and settings.service.health_port == 8080


def _secure(pod: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert "args" not in container and "command" not in container, "the image's entrypoint (dbstash run)"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], "a writable /tmp"
    secrets = [v for v in pod["volumes"] if "secret" in v]
    assert {v["secret"]["secretName"] for v in secrets} == {"dbstash-pg", "dbstash-notify"}
    assert all(v["secret"]["defaultMode"] == 0o400 for v in secrets)
    text = yaml.safe_dump(pod)
    for secret in ("s3cret-pw", "s3cret-key", "dbstash-token-123"):
        assert secret not in text, "secrets stay in the Secrets, mounted as files"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["mode=daemon"], "cronjob"),
        (["secrets[3].variable=DB_URI", "secrets[3].secretName=x", "secrets[3].key=y"], "_FILE"),
        (["env.BACKUP_SCHEDULE=once"], "set by the chart"),
        (["env.DB_PASSWORD_FILE=/run/secrets/x/y"], "secrets list"),
    ],
)
def test_bad_values_fail_to_render(sets: list[str], message: str) -> None:
    args = [a for s in (*SECRETS, *sets) for a in ("--set", s)]
    done = helm("template", "backup", str(CHART), *args, check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_bad_settings_in_values_fail_in_the_loader(tmp_path: Path) -> None:
    pod = pod_of(render("env.RETENTION_KEEP_DAILY=seven")[0])
    with pytest.raises(ConfigError, match="RETENTION_KEEP_DAILY"):
        loaded_settings(pod, tmp_path)

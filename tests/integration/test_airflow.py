"""dbstash.contrib.airflow under real Airflow 3 (its own virtualenv, .cache/airflow-venv, built by the
README's test command: Airflow's pins are not the project's). The DAGs run with ``airflow tasks test``
and ``airflow dags test`` against a SQLite metadata database in a temp AIRFLOW_HOME; the database
credentials come from Airflow Connections (``AIRFLOW_CONN_*``), the remote from an Airflow Variable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from dbstash.jobs.manifest import MANIFEST_SUFFIX
from tests.support.servers import PgServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = ROOT / ".cache" / "airflow-venv" / "bin"
EXAMPLE = ROOT / "examples" / "airflow" / "backup_dag.py"

TASKFLOW_DAG = """
import os
import pendulum
from airflow.sdk import dag, task
from dbstash.contrib.airflow import backup_connection

@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def taskflow_backup():
    @task(retries=0)
    def backup() -> dict:
        return backup_connection("broken_db", remote=os.environ["TASKFLOW_REMOTE"])

    @task
    def after(result: dict) -> str:
        return result["remote_path"]

    after(backup())

taskflow_backup()
"""


class Airflow:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            "PATH": os.pathsep.join([str(AIRFLOW_BIN), os.environ["PATH"]]),  # rclone, sqlite3, pg tools
            "HOME": os.environ.get("HOME", "/root"),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        }

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AIRFLOW_BIN / "airflow"), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            return list(db.execute(sql))

    def xcom(self, dag_id: str, task_id: str) -> object:
        rows = self.query(
            f"SELECT value FROM xcom WHERE dag_id = '{dag_id}' AND task_id = '{task_id}' AND key = 'return_value'"
        )
        assert len(rows) == 1, rows
        value = rows[0][0]
        assert isinstance(value, (str, bytes)), value
        return json.loads(value)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    if not (AIRFLOW_BIN / "airflow").exists():
        pytest.fail("no Airflow virtualenv at .cache/airflow-venv: run the README's test command (it builds it)")
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    shutil.copy(EXAMPLE, home / "dags" / "backup_dag.py")
    (home / "dags" / "taskflow_dag.py").write_text(TASKFLOW_DAG)
    run = Airflow(home)
    migrated = run("db", "migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return run


def _backups(remote: Path) -> list[str]:
    return sorted(n for n in os.listdir(remote) if not n.endswith(MANIFEST_SUFFIX)) if remote.exists() else []


def test_tasks_test_backs_up_the_connection_s_sqlite_database(
    airflow: Airflow, sqlite_db: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    proc = airflow(
        "tasks",
        "test",
        "nightly_etl",
        "backup_app_db",
        "2026-01-01",
        AIRFLOW_CONN_APP_DB=json.dumps({"conn_type": "sqlite", "host": str(sqlite_db)}),
        AIRFLOW_VAR_DBSTASH_REMOTE=str(remote),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    (name,) = _backups(remote)
    assert (remote / (name + MANIFEST_SUFFIX)).exists()
    assert "Pushing xcom" in out and f"backed up {remote / name}" in out


def test_dags_test_hands_the_result_on_through_xcom_and_keeps_the_password_out(
    airflow: Airflow, pg: PgServer, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": pg.port,
        "login": pg.user,
        "password": pg.password,
        "schema": pg.database,
    }
    proc = airflow(
        "dags",
        "test",
        "nightly_etl",
        "2026-01-02",
        AIRFLOW_CONN_APP_DB=json.dumps(conn),
        AIRFLOW_VAR_DBSTASH_REMOTE=str(remote),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    (name,) = _backups(remote)
    result = airflow.xcom("nightly_etl", "backup_app_db")
    assert isinstance(result, dict)
    assert result["remote_path"] == str(remote / name) and result["engine"] == "pg"
    assert result["sha256"] == hashlib.sha256((remote / name).read_bytes()).hexdigest()
    assert airflow.xcom("nightly_etl", "extract") == str(remote / name)  # the downstream task got it
    logs = "".join(p.read_text(errors="replace") for p in (airflow.home / "logs").rglob("*") if p.is_file())
    assert pg.password not in out + logs + json.dumps(result)


def test_a_failed_backup_fails_the_task_with_the_typed_error(airflow: Airflow, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    proc = airflow(
        "dags",
        "test",
        "taskflow_backup",
        "2026-01-03",
        AIRFLOW_CONN_BROKEN_DB=json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "missing.db")}),
        TASKFLOW_REMOTE=str(remote),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "dbstash.errors.ConfigError" in out and "an existing SQLite database file" in out
    rows = airflow.query("SELECT task_id, state FROM task_instance WHERE dag_id = 'taskflow_backup'")
    states = {str(task): str(state) for task, state in rows}
    assert states == {"backup": "failed", "after": "upstream_failed"}, states
    assert _backups(remote) == []

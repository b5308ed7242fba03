"""An Airflow 3 DAG that backs up a database before the nightly ETL (examples/airflow/backup_dag.py).

The database's credentials are the Airflow Connection ``app_db`` (e.g.
``AIRFLOW_CONN_APP_DB='{"conn_type": "postgres", "host": "db", "login": "backup", "password": "...",
"schema": "app"}'`` or one made in the UI); the remote is the Airflow Variable ``dbstash_remote``
(``AIRFLOW_VAR_DBSTASH_REMOTE=s3:backups/app``): without it the task fails, it never guesses one.

The backup's result (remote path, size, sha256, ...) is the task's XCom; a failed backup fails the
task with dbstash's typed error, so the ETL never starts on top of a database with no backup.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from dbstash.contrib.airflow import DbstashBackupOperator


@dag(schedule="0 1 * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def nightly_etl() -> None:
    backup = DbstashBackupOperator(
        task_id="backup_app_db",
        conn_id="app_db",
        remote="{{ var.value.dbstash_remote }}",
        options={"retention_max_days": 30, "timeout": 3600},
    )

    @task
    def extract(backup_result: dict[str, object]) -> str:
        # starts only after a committed backup; the XCom says which one the ETL runs on top of
        return str(backup_result["remote_path"])

    extract(backup.output)  # >> transform() >> load()


nightly_etl()

"""An Airflow DAG that backs up a database before the nightly ETL (examples/airflow/backup_dag.py).

The task body is a plain function, so it runs (and is tested) without Airflow installed; the DAG
is defined only where Airflow is importable. dbstash raises on failure, so the task fails and the
ETL never starts on top of an unbacked-up database.
"""

from __future__ import annotations

import os
from typing import Any

import dbstash


def backup_app_db(uri: str | None = None, remote: str | None = None) -> dict[str, Any]:
    """Back up and return the result for XCom: remote path, size, sha256, duration."""
    result = dbstash.backup(
        uri or os.environ["APP_DB_URI"],
        remote=remote or os.environ.get("BACKUP_REMOTE", "s3:backups/app"),
        password_file=os.environ.get("APP_DB_PASSWORD_FILE"),
        retention_max_days=30,
        timeout=3600,
    )
    return result.to_dict()


try:  # pragma: no cover - only where Airflow is installed
    from airflow.decorators import dag, task
except ImportError:  # the test suite runs the task body without Airflow
    pass
else:
    import pendulum

    @dag(schedule="0 1 * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
    def nightly_etl() -> None:
        # retries=0: a failed backup leaves nothing complete-looking; rerun it on purpose, not blindly
        task(retries=0)(backup_app_db)()  # >> extract() >> transform() >> load()

    nightly_etl()

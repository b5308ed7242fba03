"""``DbstashBackupOperator``: the backup of an Airflow Connection's database as an Airflow 3 task.

Imported by ``dbstash.contrib.airflow`` when first asked for: this module needs Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from dbstash.contrib.airflow import backup_connection


class DbstashBackupOperator(BaseOperator):  # type: ignore[misc]  # Airflow is untyped where mypy runs
    """Back up the database of the Connection *conn_id* into *remote*; the result goes to XCom.

    *remote* is templated (``"s3:backups/{{ dag.dag_id }}"``). *options*:
    any keyword of [`backup()`][dbstash.backup]. ``retries`` defaults to 0: a failed run leaves
    nothing complete-looking, so rerun it on purpose rather than blindly.

    Examples:
        ```python
        DbstashBackupOperator(
            task_id="backup", conn_id="app_db", remote="s3:backups/app",
            options={"retention_max_days": 30, "compress": "zstd"},
        )
        ```
    """

    template_fields: Sequence[str] = ("remote",)
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        conn_id: str,
        remote: str | list[str],
        options: dict[str, Any] | None = None,
        retries: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(retries=retries, **kwargs)
        self.conn_id = conn_id
        self.remote = remote
        self.options = dict(options or {})

    def execute(self, context: Any) -> dict[str, Any]:
        """Run the backup; its ``to_dict()`` is the task's XCom ``return_value``."""
        result = backup_connection(self.conn_id, remote=self.remote, **self.options)
        self.log.info("backed up %s: %s bytes, sha256 %s", result["remote_path"], result["size"], result["sha256"])
        return result

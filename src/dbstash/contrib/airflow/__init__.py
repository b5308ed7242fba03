"""Airflow 3: back up a database from a task, with its credentials in an Airflow Connection.

Two forms, both on ``airflow.sdk`` (Airflow 3's task SDK), both returning the backup's
``to_dict()`` (the task's XCom ``return_value``: remote path, size, sha256, ...). A failed backup
raises dbstash's typed error, so the task fails with it (and leaves nothing complete-looking)::

    from airflow.sdk import dag, task
    from dbstash.contrib.airflow import DbstashBackupOperator, backup_connection

    @dag(schedule="0 1 * * *")
    def nightly():
        DbstashBackupOperator(task_id="backup", conn_id="app_db", remote="s3:backups/app")

        @task(retries=0)
        def backup_before_etl() -> dict:
            return backup_connection("app_db", remote="s3:backups/app", retention_max_days=30)

The Connection gives the engine (its type: ``postgres``, ``mysql``, ``mariadb``, ``mongo``,
``redis``, ``sqlite``), host, port, login, schema (the database; a SQLite connection's host is the
file) and password; the password goes to dbstash on its own, never inside the URI. Its extras
``dbstash_engine`` (e.g. ``mariadb`` for a ``mysql`` connection) and, for MongoDB,
``authSource`` are read too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from dbstash.errors import ConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: Airflow connection types -> dbstash URI schemes
SCHEMES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "mongo": "mongodb",
    "mongodb": "mongodb",
    "redis": "redis",
    "sqlite": "sqlite",
}


def uri_from_connection(conn: Connection) -> tuple[str, str | None]:
    """The dbstash URI of an Airflow ``Connection`` (without the password) and the password.

    Raises:
        ConfigError: naming ``conn_id``: a connection type dbstash has no engine for, or a SQLite
            connection without a file path.
    """
    extra: Mapping[str, Any] = conn.extra_dejson or {}
    kind = str(extra.get("dbstash_engine") or conn.conn_type or "")
    scheme = SCHEMES.get(kind)
    if scheme is None:
        raise ConfigError(
            "conn_id", f"a connection of type {', '.join(sorted(SCHEMES))} (dbstash has no engine for it)", kind
        )
    if scheme == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise ConfigError("conn_id", "a sqlite connection whose host is the database file's path", conn.conn_id)
        return "sqlite://" + quote(os.path.abspath(path)), conn.password or None
    login = quote(conn.login, safe="") + "@" if conn.login else ""
    host = conn.host or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    port = f":{conn.port}" if conn.port else ""
    database = quote(conn.schema or "", safe="")
    query = {"authSource": str(extra["authSource"])} if scheme == "mongodb" and extra.get("authSource") else {}
    suffix = "?" + urlencode(query) if query else ""
    return f"{scheme}://{login}{host}{port}/{database}{suffix}", conn.password or None


def backup_connection(conn_id: str, *, remote: str | list[str], **options: Any) -> dict[str, Any]:
    """Back up the database of the Airflow Connection *conn_id* into *remote*; the result as a dict.

    *options*: any keyword of [`backup()`][dbstash.backup] (``retention_max_days``,
    ``compress``, ``timeout``, ...). Call it inside a task (it reads the Connection through the
    task SDK); the dict is what the task returns to XCom.

    Raises:
        ConfigError: the connection or an option is malformed (nothing was dumped).
        BackupFailed: the run failed; nothing remains under the final name.
    """
    from airflow.sdk import BaseHook  # noqa: PLC0415 - only inside Airflow

    import dbstash  # noqa: PLC0415 - dbstash.contrib imports nothing of dbstash's at import time

    uri, password = uri_from_connection(BaseHook.get_connection(conn_id))
    if password is not None and "password" not in options and "password_file" not in options:
        options["password"] = password
    return dbstash.backup(uri, remote=remote, **options).to_dict()


def __getattr__(name: str) -> Any:
    """``DbstashBackupOperator`` is made on first use, so that this module imports without Airflow."""
    if name == "DbstashBackupOperator":
        from dbstash.contrib.airflow.operator import DbstashBackupOperator  # noqa: PLC0415

        return DbstashBackupOperator
    raise AttributeError(name)


__all__ = ["DbstashBackupOperator", "backup_connection", "uri_from_connection"]

"""SQLAlchemy and Alembic: a dbstash URI from a SQLAlchemy URL, and a backup before a migration that
has revisions to apply.

In an Alembic ``env.py``, after ``context.configure(connection=connection, ...)``::

    from dbstash.contrib.sqlalchemy import backup_before_migration

    backup_before_migration(context, remote="s3:bucket/pre-migration")
    with context.begin_transaction():
        context.run_migrations()

``alembic current``, ``alembic check``, ``alembic stamp``, offline (``--sql``) runs and an upgrade
or downgrade with nothing to apply take no backup; a failed backup raises, so the migration does
not start.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dbstash.errors import ConfigError

if TYPE_CHECKING:
    from dbstash.jobs.backup import BackupResult

#: SQLAlchemy backend names -> dbstash URI schemes
SCHEMES = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mariadb", "sqlite": "sqlite"}
#: The migration commands that change the schema (Alembic's names for them)
CHANGING = ("upgrade", "downgrade")


def uri_from_url(url_or_engine: Any) -> str:
    """A dbstash URI for a SQLAlchemy ``URL``, URL string or ``Engine``: the ``+driver`` dropped
    (``postgresql+psycopg://`` -> ``postgresql://``), the password and query options kept, and a
    SQLite path meant as SQLAlchemy means it (``sqlite:///app.db`` is relative to the working
    directory, ``sqlite:////srv/app.db`` absolute).

    Raises:
        ConfigError: naming ``url``: an in-memory SQLite database, or a backend dbstash has no engine for.
    """
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only for SQLAlchemy users

    url = make_url(getattr(url_or_engine, "url", url_or_engine))
    backend = url.get_backend_name()
    scheme = SCHEMES.get(backend)
    if scheme is None:
        raise ConfigError("url", f"a {', '.join(SCHEMES)} URL (dbstash has no engine for {backend})", backend)
    if scheme == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError("url", "a SQLite file (an in-memory database cannot be backed up)", str(url))
        return "sqlite://" + quote(os.path.abspath(url.database))
    return url.set(drivername=scheme).render_as_string(hide_password=False)


def pending_revisions(context: Any) -> int:
    """How many revisions the running Alembic command will apply (0 for commands that change nothing).

    *context*: ``alembic.context`` (the ``EnvironmentContext``) inside ``env.py``, configured with a
    connection, or its ``MigrationContext``.
    """
    migration = context.get_context() if hasattr(context, "get_context") else context
    fn = migration.opts.get("fn")
    if migration.as_sql or fn is None or getattr(fn, "__name__", "") not in CHANGING:
        return 0
    return len(fn(migration.get_current_heads(), migration))


def backup_before_migration(context: Any, **backup: Any) -> BackupResult | None:
    """Back up the database a migration is about to change, if it has revisions to apply.

    *context*: ``alembic.context`` inside ``env.py``, after ``context.configure(connection=...)``.
    *backup*: keywords of [`dbstash.backup()`][dbstash.backup] (``remote=`` at least; ``name_template``, retention,
    encryption, ...). Returns the backup, or None when nothing is to be applied. A failure raises
    (a [`DbstashError`][dbstash.DbstashError]): the migration should not start without its backup.
    """
    import dbstash  # noqa: PLC0415

    migration = context.get_context() if hasattr(context, "get_context") else context
    count = pending_revisions(migration)
    if count == 0:
        return None
    backup.setdefault("name_template", "{db}-pre-migration-{date}-{time}")
    return dbstash.backup(uri_from_url(migration.connection.engine), **backup)


__all__ = ["backup_before_migration", "pending_revisions", "uri_from_url"]

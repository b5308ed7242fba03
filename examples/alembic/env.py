"""Alembic env.py that backs up the database before every online migration (examples/alembic/env.py).

Set BACKUP_REMOTE (an rclone remote); SKIP_PRE_MIGRATION_BACKUP=1 skips the backup. If the backup
fails, dbstash raises and the migration does not start.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlalchemy.engine import make_url

import dbstash


def backup_before_migrating(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        uri = f"sqlite:///{parsed.database}"
    else:  # postgresql+psycopg://... -> postgresql://... ; the password goes as a parameter, not in the URI
        uri = parsed.set(drivername=parsed.get_backend_name(), password=None).render_as_string(hide_password=False)
    result = dbstash.backup(
        uri,
        remote=os.environ["BACKUP_REMOTE"],
        password=parsed.password,
        name_template="{db}-pre-migration-{date}-{time}",
    )
    print(f"pre-migration backup: {result.remote_path} ({result.size} bytes)")


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url") or ""
    if os.environ.get("SKIP_PRE_MIGRATION_BACKUP") != "1":
        backup_before_migrating(url)
    connectable = engine_from_config(
        context.config.get_section(context.config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

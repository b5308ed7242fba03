"""Alembic env.py that backs up the database before every migration that changes it (examples/alembic/env.py).

Set BACKUP_REMOTE (an rclone remote); SKIP_PRE_MIGRATION_BACKUP=1 skips the backup. Only an
upgrade or downgrade with revisions to apply is backed up (``alembic current``, ``stamp``, a
no-op ``upgrade head`` and ``--sql`` runs are not). If the backup fails, dbstash raises and the
migration does not start. The URL is SQLAlchemy's, any driver, relative SQLite paths included
(``dbstash.contrib.sqlalchemy.uri_from_url``).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import engine_from_config, pool

from dbstash.contrib.sqlalchemy import backup_before_migration


def run_migrations_online() -> None:
    connectable = engine_from_config(
        context.config.get_section(context.config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        if os.environ.get("SKIP_PRE_MIGRATION_BACKUP") != "1":
            result = backup_before_migration(context, remote=os.environ["BACKUP_REMOTE"])
            if result is not None:
                print(f"pre-migration backup: {result.remote_path} ({result.size} bytes)")
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()

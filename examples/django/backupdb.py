"""A Django management command: ``python manage.py backupdb`` (copy to yourapp/management/commands/).

The app ``dbstash.contrib.django`` does all of this and more (any alias, restore, list, a backup
before ``migrate``; docs/library.md): this file is the smallest hand-written form, for reading.

Backs up the ``default`` database to ``settings.BACKUP_REMOTE`` with dbstash. PostgreSQL, MySQL,
MariaDB and SQLite settings are turned into a dbstash URI; the password is passed as a parameter,
so it never appears in a URI, argv or a log line.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

import dbstash

SCHEMES = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.mysql": "mysql",
    "django.db.backends.sqlite3": "sqlite",
}


def database_uri(db: dict[str, Any]) -> str:
    """The dbstash URI of a Django DATABASES entry (without its password)."""
    scheme = SCHEMES.get(db["ENGINE"])
    if scheme is None:
        raise CommandError(f"dbstash cannot back up {db['ENGINE']}")
    if scheme == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = f"{db['USER']}@" if db.get("USER") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"{scheme}://{user}{db.get('HOST') or 'localhost'}{port}/{db['NAME']}"


class Command(BaseCommand):
    help = "Back up the default database with dbstash (to settings.BACKUP_REMOTE)"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--keep", type=int, default=0, help="keep at most N backups (retention)")

    def handle(self, *args: Any, **options: Any) -> None:
        db = settings.DATABASES["default"]
        try:
            result = dbstash.backup(
                database_uri(db),
                remote=settings.BACKUP_REMOTE,
                password=db.get("PASSWORD") or None,
                retention_max_files=options["keep"],
            )
        except dbstash.DbstashError as exc:
            raise CommandError(str(exc)) from exc  # dbstash's messages are already redacted
        self.stdout.write(f"{result.remote_path} {result.size} bytes sha256={result.sha256}")

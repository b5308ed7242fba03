"""``python manage.py dbstash_backup [--database ALIAS] [--json]``: back up a DATABASES entry now."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from dbstash.errors import DbstashError


class Command(BaseCommand):
    help = "Back up a database of settings.DATABASES with dbstash (settings.DBSTASH: remote, retention, ...)"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--database", default="default", help="the DATABASES alias (default: default)")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        import dbstash  # noqa: PLC0415
        from dbstash.contrib.django.jobs import command_error, job_settings  # noqa: PLC0415

        try:
            result = dbstash.backup(settings=job_settings(options["database"]))
        except DbstashError as exc:
            raise command_error(exc) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result.to_dict()))
        else:
            self.stdout.write(f"{result.remote_path} {result.size} bytes sha256={result.sha256}")

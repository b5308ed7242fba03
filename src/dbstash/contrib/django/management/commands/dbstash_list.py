"""``python manage.py dbstash_list [--database ALIAS]``: the backups of a DATABASES entry, newest first."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from dbstash.errors import DbstashError


class Command(BaseCommand):
    help = "List the dbstash backups of a database of settings.DATABASES, newest first"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--database", default="default", help="the DATABASES alias (default: default)")

    def handle(self, *args: Any, **options: Any) -> None:
        import dbstash  # noqa: PLC0415
        from dbstash.contrib.django.jobs import command_error, job_settings  # noqa: PLC0415
        from dbstash.units import human_bytes  # noqa: PLC0415

        try:
            found = dbstash.list_backups(job_settings(options["database"]))
        except DbstashError as exc:
            raise command_error(exc) from exc
        for info in found:
            state = "complete" if info.complete else "PARTIAL"
            check = info.manifest_problem or (f"sha256 {info.manifest.sha256[:12]}" if info.manifest else "")
            self.stdout.write(
                f"{info.taken_at:%Y-%m-%d %H:%M:%S}  {human_bytes(info.size):>10}  {state}  {info.name}  {check}"
            )
        if not found:
            self.stdout.write("no backups of this database yet")

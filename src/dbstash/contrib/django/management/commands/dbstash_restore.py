"""``python manage.py dbstash_restore [--database ALIAS] [--backup latest] [--force]``: restore a backup
into the DATABASES entry it was taken from (or ``--target`` URI)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dbstash.errors import DbstashError


class Command(BaseCommand):
    help = "Restore a dbstash backup into a database of settings.DATABASES (checked against its manifest)"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--database", default="default", help="the DATABASES alias (default: default)")
        parser.add_argument(
            "--backup", default="latest", help="latest, a backup name, or a time such as 2026-02-07T02:00"
        )
        parser.add_argument("--target", help="restore into this URI (same engine) instead")
        parser.add_argument("--force", action="store_true", help="restore even if the target holds data")

    def handle(self, *args: Any, **options: Any) -> None:
        import dbstash  # noqa: PLC0415
        from dbstash.contrib.django.jobs import job_settings  # noqa: PLC0415

        try:
            result = dbstash.restore(
                job_settings(options["database"]), options["backup"], target=options["target"], force=options["force"]
            )
        except DbstashError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"restored {result.name} into {result.target} ({result.size} bytes, sha256 verified)")

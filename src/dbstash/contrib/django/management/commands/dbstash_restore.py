"""``python manage.py dbstash_restore [--database ALIAS] [--backup latest] [--into ALIAS | --target URI] [--force]``:
restore a backup into the DATABASES entry it was taken from, another entry (``--into``), or a URI."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from dbstash.errors import DbstashError


class Command(BaseCommand):
    help = "Restore a dbstash backup into a database of settings.DATABASES (checked against its manifest)"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--database", default="default", help="the DATABASES alias backed up (default: default)")
        parser.add_argument(
            "--backup", default="latest", help="latest, a backup name, or a time such as 2026-02-07T02:00"
        )
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--into", metavar="ALIAS", help="restore into this DATABASES entry instead (its PASSWORD)")
        where.add_argument(
            "--target",
            metavar="URI",
            help="restore into this URI (same engine) instead; without a password in it, the alias's PASSWORD",
        )
        parser.add_argument("--force", action="store_true", help="restore even if the target holds data")
        parser.add_argument(
            "--allow-unverified", action="store_true", help="restore a backup without a usable manifest (unproven)"
        )
        parser.add_argument(
            "--allow-unsigned", action="store_true", help="with trusted_keys: restore a backup that has no signature"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings as django_settings  # noqa: PLC0415

        import dbstash  # noqa: PLC0415
        from dbstash.contrib.django.jobs import command_error, database_uri, job_settings  # noqa: PLC0415

        try:
            job = job_settings(options["database"])
            target, password = options["target"], job.connection.password
            if options["into"] is not None:
                into = django_settings.DATABASES.get(options["into"])
                if into is None:
                    raise CommandError(f"--into: a DATABASES alias ({', '.join(django_settings.DATABASES)})")
                target, password = database_uri(into), into.get("PASSWORD") or None
            elif target is not None and urlsplit(target).password is not None:
                password = None  # the URI brings its own
            result = dbstash.restore(
                job,
                options["backup"],
                target=target,
                target_password=password if target is not None else None,
                force=options["force"],
                allow_unverified=options["allow_unverified"],
                allow_unsigned=options["allow_unsigned"],
            )
        except DbstashError as exc:
            raise command_error(exc) from exc
        self.stdout.write(f"restored {result.name} into {result.target} ({result.size} bytes, sha256 verified)")

"""The app's configuration: connects the backup before ``migrate`` when ``DBSTASH`` asks for it."""

from __future__ import annotations

from django.apps import AppConfig


class DbstashConfig(AppConfig):
    """``dbstash.contrib.django``."""

    name = "dbstash.contrib.django"
    label = "dbstash"
    verbose_name = "dbstash backups"

    def ready(self) -> None:
        from django.db.models.signals import pre_migrate  # noqa: PLC0415

        from dbstash.contrib.django.jobs import backup_before_migrate, options  # noqa: PLC0415

        if options().get("backup_before_migrate"):
            pre_migrate.connect(backup_before_migrate, dispatch_uid="dbstash-backup-before-migrate")

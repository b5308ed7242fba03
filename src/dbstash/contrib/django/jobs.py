"""Django's ``DATABASES`` and ``DBSTASH`` settings as dbstash settings, and the backup before ``migrate``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from django.conf import settings as django_settings
from django.core.management.base import CommandError

from dbstash.errors import ConfigError, DbstashError
from dbstash.logs import get_logger
from dbstash.settings.config import Settings

log = get_logger("dbstash.django")

#: Django database backends -> dbstash URI schemes
SCHEMES = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.mysql": "mysql",
    "django.db.backends.sqlite3": "sqlite",
}
#: ``OPTIONS`` that say where and how to connect, as the URI parameter each becomes (the others,
#: such as ``isolation_level`` or ``init_command``, concern Django's own sessions)
PG_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "service",
    "passfile",
    "options",
    "application_name",
    "connect_timeout",
    "target_session_attrs",
    "channel_binding",
)
MYSQL_OPTIONS = {"unix_socket": "socket", "charset": "default-character-set", "ssl_mode": "ssl-mode"}
#: ``DBSTASH`` keys that are dbstash-for-Django's own (the rest go to ``Settings.create``)
OWN_KEYS = ("backup_before_migrate",)


def options() -> dict[str, Any]:
    """The ``DBSTASH`` setting (a dict)."""
    value = getattr(django_settings, "DBSTASH", {})
    if not isinstance(value, Mapping):
        raise ConfigError("settings.DBSTASH", "a dict of dbstash.Settings.create keywords", type(value).__name__)
    return dict(value)


def database_uri(db: Mapping[str, Any]) -> str:
    """The dbstash URI of a ``DATABASES`` entry, without its password (given to dbstash on its own)."""
    scheme = SCHEMES.get(str(db.get("ENGINE")))
    if scheme is None:
        raise ConfigError("DATABASES ENGINE", f"one of {', '.join(SCHEMES)}", str(db.get("ENGINE")))
    name = str(db.get("NAME") or "")
    if scheme == "sqlite":
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ConfigError("DATABASES NAME", "a SQLite file (an in-memory database cannot be backed up)", name)
        return "sqlite://" + quote(os.path.abspath(name))
    host, query = _where(scheme, str(db.get("HOST") or ""), db.get("OPTIONS") or {})
    user = quote(str(db["USER"]), safe="") + "@" if db.get("USER") else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    tail = "?" + urlencode(query) if query else ""
    return f"{scheme}://{user}{host or 'localhost'}{port}/{quote(name, safe='')}{tail}"


def _where(scheme: str, host: str, opts: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The URI's host and query for *HOST* (a socket directory or path) and the connection ``OPTIONS``."""
    if scheme == "postgresql":
        query = {k: str(opts[k]) for k in PG_OPTIONS if k in opts}
        if host.startswith("/"):
            query["host"], host = host, ""
        return host, query
    query = {MYSQL_OPTIONS[k]: str(opts[k]) for k in MYSQL_OPTIONS if k in opts}
    for key, value in (opts.get("ssl") or {}).items():  # {"ca": path, "cert": ..., "key": ...}
        query[f"ssl-{key}"] = str(value)
    if host.startswith("/"):
        query["socket"], host = host, "localhost"
    return host, query


def job_settings(alias: str = "default", **overrides: Any) -> Settings:
    """dbstash settings for the ``DATABASES`` alias *alias*, from ``DBSTASH`` (and *overrides*)."""
    databases = django_settings.DATABASES
    if alias not in databases:
        raise ConfigError("--database", f"a DATABASES alias ({', '.join(databases)})", alias)
    db = databases[alias]
    kwargs = {k: v for k, v in {**options(), **overrides}.items() if k not in OWN_KEYS}
    if "remote" not in kwargs:
        raise ConfigError(
            'settings.DBSTASH["remote"]', "an rclone remote path such as s3:bucket/app or /backups", missing=True
        )
    password = db.get("PASSWORD") or None
    try:
        return Settings.create(database_uri(db), password=password, **kwargs)
    except TypeError as exc:  # a key Settings.create does not take
        raise ConfigError("settings.DBSTASH", f"keywords of dbstash.Settings.create ({exc})") from None


def _testing() -> bool:
    """Whether Django's test environment is set up (the test runner's databases are being created)."""
    from django.core import mail  # noqa: PLC0415

    return hasattr(mail, "outbox")


_done: set[int] = set()


def backup_before_migrate(sender: Any, *, plan: list[Any] | None = None, using: str = "default", **_: Any) -> None:
    """``pre_migrate`` receiver: back up *using* once per ``migrate`` run that has a plan.

    Django sends ``pre_migrate`` once per app with the same plan: the first one backs up. Raises
    CommandError (and so stops ``migrate``) when the backup fails.
    """
    import dbstash  # noqa: PLC0415

    if not plan or id(plan) in _done or _testing():
        return
    _done.add(id(plan))
    settings = job_settings(using)
    if anyio.run(settings.engine().is_empty, settings.connection) is True:
        log.info("nothing to back up before migrating %s: the database holds no data yet", using)
        return
    try:
        result = dbstash.backup(settings=settings)
    except DbstashError as exc:
        raise CommandError(f"the backup before migrating failed, so nothing was migrated: {exc}") from exc
    log.info("backed up %s before migrating: %s", using, result.remote_path)


__all__ = ["backup_before_migrate", "database_uri", "job_settings", "options"]


def command_error(exc: DbstashError) -> CommandError:
    """*exc* as a management command's error: a refusal's way through named as the command's flag
    (``--force``), not the library's ``force=True``."""
    message = str(exc)
    if exc.override:
        message = message.replace(f"{exc.override}=True", "--" + exc.override.replace("_", "-"))
    return CommandError(message)

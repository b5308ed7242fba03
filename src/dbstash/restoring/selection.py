"""Which job and which backup a restore, verify or listing works on: the job as
[`backup()`][dbstash.backup] took it (a URI and its options, or a `Settings`), and the backup a
selector (``latest``, a name, a time) picks among its complete ones."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dbstash.errors import BackupNotFound, ConfigError
from dbstash.settings.config import Settings

if TYPE_CHECKING:
    from dbstash.restoring.listing import BackupInfo


def job_of(
    settings: Settings | str,
    *,
    remote: str | Sequence[str] | None,
    name_template: str | None,
    password: str | None,
    password_file: str | os.PathLike[str] | None,
    options: Mapping[str, Any] | None,
) -> Settings:
    """The job that restore, verify and list work on: *settings* as given, or built like
    [`backup()`][dbstash.backup] builds it from a URI, *remote* and the name options (``compress``,
    ``identity_file``, ... in *options*), so that the names it looks for are the ones backup gave."""
    given = remote is not None or name_template is not None or password is not None or password_file is not None
    if isinstance(settings, Settings):
        if given or options:
            raise ConfigError("settings", "either a Settings or a uri with remote=... and the job's options, not both")
        return settings
    if remote is None:
        raise ConfigError("remote", "the rclone remote path the job's backups are in", missing=True)
    kwargs: dict[str, Any] = dict(options or {})
    if name_template is not None:
        kwargs["name_template"] = name_template
    return Settings.create(settings, remote=remote, password=password, password_file=password_file, **kwargs)


_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[T _-](\d{2}):?(\d{2})(?::?(\d{2}))?)?$")


def select_backup(infos: Sequence[BackupInfo], selector: str, zone: ZoneInfo) -> BackupInfo:
    """``latest``, an exact name, or a time (``2026-02-07``, ``2026-02-07T02:00``, ``2026-02-07-020000``):
    the newest complete backup taken at or before it."""
    complete = [i for i in infos if i.complete]
    newest = f" (the newest is {complete[0].name})" if complete else " (it has none yet)"
    if selector == "latest":
        if not complete:
            partial = f"; {len(infos)} partial upload(s) of failed runs are not restorable" if infos else ""
            raise BackupNotFound("backup", f"this job has no complete backup yet{partial}", selector)
        return complete[0]
    for i in infos:
        if i.name == selector:
            if not i.complete:
                raise BackupNotFound(
                    "backup", f"{selector!r} is a partial upload of a failed run, not restorable{newest}", selector
                )
            return i
    m = _STAMP.match(selector.strip())
    if not m:
        raise BackupNotFound(
            "backup",
            f"no backup of this job is named {selector!r}{newest}; a backup is chosen by its name, latest, "
            "or a time such as 2026-02-07T02:00",
            selector,
        )
    day, hh, mm, ss = m.groups()
    try:
        when = datetime.fromisoformat(f"{day}T{hh or '23'}:{mm or '59'}:{ss or ('59' if not hh else '00')}")
    except ValueError:
        raise ConfigError(
            "backup", "latest, a backup name, or a real time such as 2026-02-07T02:00", selector
        ) from None
    when = when.replace(tzinfo=zone)
    at_or_before = [i for i in complete if i.taken_at <= when.astimezone(UTC)]
    if not at_or_before:
        oldest = f" (the oldest is {complete[-1].name})" if complete else " (it has none yet)"
        raise BackupNotFound(
            "backup", f"this job has no complete backup taken at or before {selector}{oldest}", selector
        )
    return at_or_before[0]

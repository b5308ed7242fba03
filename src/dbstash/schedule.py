"""Cron schedules (``BACKUP_SCHEDULE``), evaluated in the job's time zone with croniter."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from dbstash.errors import ConfigError


def validate_cron(expression: str, variable: str = "BACKUP_SCHEDULE") -> None:
    """Raise :class:`ConfigError` unless *expression* is a five-field cron expression (or ``once``)."""
    from croniter import croniter  # noqa: PLC0415 - 20 ms of import that one-shot runs never need

    fields = expression.split()
    if len(fields) != 5 or not croniter.is_valid(expression):
        raise ConfigError(variable, "a five-field cron expression such as '0 2 * * *', or 'once'", expression)


def next_run(expression: str, after: datetime, tz: ZoneInfo) -> datetime:
    """The first time after *after* that *expression* fires, as an aware datetime in *tz*."""
    from croniter import croniter  # noqa: PLC0415 - see validate_cron

    start = after.astimezone(tz)
    nxt: datetime = croniter(expression, start).get_next(datetime)
    return nxt

"""Cron schedules (``BACKUP_SCHEDULE``), evaluated in the job's time zone with croniter.

Daylight-saving rule (the ISC/Vixie cron rule):

- **Spring forward** — a time that does not exist that day (02:30 when clocks jump from 02:00 to
  03:00) fires once, at the first valid instant after the gap (03:00).
- **Fall back** — for a job with fixed hours (hour field not ``*`` nor ``*/N``), a wall-clock time that
  occurs twice (01:30 when clocks go from 02:00 back to 01:00) fires once, at its first occurrence.
  Jobs whose hour field is ``*`` or ``*/N`` follow real time and also fire in the repeated hour.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dbstash.errors import ConfigError


def validate_cron(expression: str, variable: str = "BACKUP_SCHEDULE") -> None:
    """Raise [`ConfigError`][dbstash.ConfigError] unless *expression* is a five-field cron expression (or ``once``)."""
    from croniter import croniter  # noqa: PLC0415 - 20 ms of import that one-shot runs never need

    fields = expression.split()
    # a sixth field (seconds, croniter's extension) is accepted for short test schedules
    if len(fields) not in (5, 6) or not croniter.is_valid(expression):
        raise ConfigError(variable, "a five-field cron expression such as '0 2 * * *', or 'once'", expression)
    try:  # valid fields can still name a day that never comes (0 0 30 2 *: February 30th)
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except (ValueError, OverflowError):
        raise ConfigError(
            variable, "a cron expression that fires on a date that exists (not e.g. February 30th)", expression
        ) from None


def _fixed_hours(expression: str) -> bool:
    hour = expression.split()[1]
    return not (hour == "*" or hour.startswith("*/"))


def _second_occurrence(t: datetime, tz: ZoneInfo) -> bool:
    """Whether *t* is the repeated (second) instance of an ambiguous wall-clock time in *tz*."""
    naive = t.replace(tzinfo=None)
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    return first.utcoffset() != second.utcoffset() and t.utcoffset() == second.utcoffset()


def next_run(expression: str, after: datetime, tz: ZoneInfo, variable: str = "BACKUP_SCHEDULE") -> datetime:
    """The first time strictly after *after* that *expression* fires, as an aware datetime in *tz*."""
    from croniter import croniter  # noqa: PLC0415 - see validate_cron

    it = croniter(expression, after.astimezone(tz))
    skip_repeats = _fixed_hours(expression)
    for _ in range(1000):  # bounded: a valid expression yields a usable time long before this
        nxt: datetime = it.get_next(datetime)
        if skip_repeats and _second_occurrence(nxt, tz):
            continue
        return nxt.astimezone(tz)
    raise ConfigError(variable, "an expression that fires at least once in 1000 tries", expression)


def seconds_until(when: datetime, now: datetime) -> float:
    """Non-negative seconds from *now* to *when*."""
    return max(0.0, (when - now) / timedelta(seconds=1))

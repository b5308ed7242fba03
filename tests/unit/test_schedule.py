"""The cron schedule and its daylight-saving rule (documented in dbstash.settings.schedule and docs/service.md)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dbstash import ConfigError
from dbstash.settings.schedule import next_run, validate_cron

NY = ZoneInfo("America/New_York")  # 2026: spring forward Mar 8 02:00->03:00, fall back Nov 1 02:00->01:00


def runs(expr: str, start: datetime, until: datetime) -> list[datetime]:
    out: list[datetime] = []
    t = start
    while True:
        t = next_run(expr, t, NY)
        if t >= until:
            return out
        out.append(t)


def test_daily_job_on_spring_forward_day_runs_once_right_after_the_gap() -> None:
    day = runs("30 2 * * *", datetime(2026, 3, 7, 12, tzinfo=NY), datetime(2026, 3, 9, 12, tzinfo=NY))
    assert [t.isoformat() for t in day] == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]


def test_daily_job_on_fall_back_day_runs_once_at_the_first_occurrence() -> None:
    day = runs("30 1 * * *", datetime(2026, 10, 31, 12, tzinfo=NY), datetime(2026, 11, 2, 12, tzinfo=NY))
    assert [t.isoformat() for t in day] == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_interval_jobs_follow_real_time_through_the_repeated_hour() -> None:
    got = runs("*/30 * * * *", datetime(2026, 11, 1, 0, 50, tzinfo=NY), datetime(2026, 11, 1, 2, 1, tzinfo=NY))
    assert [t.isoformat() for t in got] == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    utc = [t.astimezone(ZoneInfo("UTC")) for t in got]  # same-zone subtraction would use wall time
    gaps = {b - a for a, b in itertools.pairwise(utc)}
    assert gaps == {timedelta(minutes=30)}  # real elapsed time stays even


def test_default_schedule_in_utc() -> None:
    utc = ZoneInfo("UTC")
    assert next_run("0 2 * * *", datetime(2026, 2, 7, 2, 0, tzinfo=utc), utc) == datetime(2026, 2, 8, 2, 0, tzinfo=utc)


@pytest.mark.parametrize("bad", ["every day", "61 * * * *", "* * *", "0 2 * * * * *", "@sometimes"])
def test_invalid_expressions(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_cron(bad)
    assert info.value.variable == "BACKUP_SCHEDULE"


def test_seconds_field_is_accepted_for_short_schedules() -> None:
    validate_cron("* * * * * */2")

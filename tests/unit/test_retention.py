from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dbstash import ConfigError
from dbstash.jobs.retention import Backup, RetentionPolicy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def history(days: int) -> list[Backup]:
    return [Backup(f"b{d:02d}", NOW - timedelta(days=d)) for d in range(days)]


def names(bs: list[Backup]) -> list[str]:
    return sorted(b.name for b in bs)


def test_unlimited_deletes_nothing() -> None:
    assert RetentionPolicy().plan(history(30), NOW).to_delete == []
    assert not RetentionPolicy().enabled


def test_max_files_keeps_newest_n() -> None:
    plan = RetentionPolicy(max_files=3).plan(history(10), NOW)
    assert names([b for b, _ in plan.keep]) == ["b00", "b01", "b02"]
    assert names(plan.to_delete) == [f"b{d:02d}" for d in range(3, 10)]


def test_max_days() -> None:
    plan = RetentionPolicy(max_days=5).plan(history(10), NOW)
    assert names(plan.to_delete) == ["b06", "b07", "b08", "b09"]  # b05 is exactly 5 days old: kept


def test_both_limits() -> None:
    plan = RetentionPolicy(max_files=2, max_days=5).plan(history(10), NOW)
    assert names([b for b, _ in plan.keep]) == ["b00", "b01"]


def test_newest_is_never_deleted_even_if_too_old() -> None:
    old = [Backup("only", NOW - timedelta(days=400)), Backup("older", NOW - timedelta(days=500))]
    plan = RetentionPolicy(max_days=1, max_files=1).plan(old, NOW)
    assert names([b for b, _ in plan.keep]) == ["only"]
    assert names(plan.to_delete) == ["older"]


def test_order_is_by_time_not_by_name_and_input_order_is_irrelevant() -> None:
    bs = [Backup("zzz", NOW - timedelta(days=3)), Backup("aaa", NOW), Backup("mmm", NOW - timedelta(days=1))]
    for order in (bs, list(reversed(bs))):
        assert names(RetentionPolicy(max_files=1).plan(order, NOW).to_delete) == ["mmm", "zzz"]


def test_reasons_are_given() -> None:
    plan = RetentionPolicy(max_files=1, max_days=2).plan(history(4), NOW)
    reasons = dict((b.name, r) for b, r in plan.delete)
    assert reasons["b01"] == "within 2 days, beyond the newest 1 (RETENTION_MAX_FILES)"
    assert reasons["b03"].startswith("older than 2 days")


def test_plan_is_idempotent() -> None:
    policy = RetentionPolicy(max_files=4, max_days=6)
    bs = history(12)
    first = policy.plan(bs, NOW)
    left = [b for b, _ in first.keep]
    assert policy.plan(left, NOW).to_delete == []


@pytest.mark.parametrize(("files", "days"), [(-1, 0), (0, -2)])
def test_negative_limits_are_config_errors(files: int, days: float) -> None:
    with pytest.raises(ConfigError):
        RetentionPolicy(max_files=files, max_days=days)


def test_the_backup_a_run_just_wrote_wins_a_tie_in_time() -> None:
    # two runs in one second: the second stores NAME-<id>, which sorts before NAME; it must still count as newest
    when = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    first, second = Backup("app-2026-01-01-020000.sql", when, 1), Backup("app-2026-01-01-020000-1a2b3c4d.sql", when, 1)
    plan = RetentionPolicy(max_files=1).plan([first, second], when, newest=second.name)
    assert [d.backup.name for d in plan.decisions if d.keep] == [second.name]
    plan = RetentionPolicy(max_files=1).plan([first, second], when, newest=first.name)
    assert [d.backup.name for d in plan.decisions if d.keep] == [first.name]

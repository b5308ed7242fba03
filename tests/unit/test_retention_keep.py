"""Calendar keep-rules (restic/borg semantics) and how they combine with max-days and max-files."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from dbstash import ConfigError, Settings
from dbstash.jobs.retention import PERIODS, Backup, RetentionPolicy

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def daily(days: int, hour: int = 2) -> list[Backup]:
    """One backup a day at HH:00 UTC for *days* days up to NOW."""
    start = NOW.replace(hour=hour) - timedelta(days=days - 1)
    return [Backup(f"b-{(start + timedelta(days=i)):%Y-%m-%d}", start + timedelta(days=i)) for i in range(days)]


def kept(policy: RetentionPolicy, backups: list[Backup]) -> list[str]:
    return sorted(b.name for b, _ in policy.plan(backups, NOW).keep)


# -- the worked examples of docs/retention.md ------------------------------------------------------
def test_keep_daily_only() -> None:
    assert kept(RetentionPolicy(keep_daily=3), daily(30)) == ["b-2026-03-13", "b-2026-03-14", "b-2026-03-15"]


def test_keep_weekly_uses_iso_weeks_and_the_newest_of_each() -> None:
    # 2026-03-15 is a Sunday: ISO week 11 runs Mon 9 .. Sun 15
    assert kept(RetentionPolicy(keep_weekly=3), daily(30)) == ["b-2026-03-01", "b-2026-03-08", "b-2026-03-15"]


def test_keep_monthly_and_yearly() -> None:
    history = daily(800)
    assert kept(RetentionPolicy(keep_monthly=3), history) == ["b-2026-01-31", "b-2026-02-28", "b-2026-03-15"]
    assert kept(RetentionPolicy(keep_yearly=5), history) == [
        "b-2024-12-31",
        "b-2025-12-31",
        "b-2026-03-15",
    ]  # only three years have backups: "the last N periods that have a backup"


def test_rules_add_up() -> None:
    got = kept(RetentionPolicy(keep_daily=2, keep_weekly=2, keep_monthly=2), daily(60))
    assert got == ["b-2026-02-28", "b-2026-03-08", "b-2026-03-14", "b-2026-03-15"]


def test_max_days_protects_recent_backups_too() -> None:
    got = kept(RetentionPolicy(keep_monthly=2, max_days=3), daily(60))
    assert got == ["b-2026-02-28", "b-2026-03-13", "b-2026-03-14", "b-2026-03-15"]


def test_max_files_is_a_ceiling_applied_last() -> None:
    got = kept(RetentionPolicy(keep_daily=7, keep_monthly=6, max_files=5), daily(200))
    assert got == ["b-2026-03-11", "b-2026-03-12", "b-2026-03-13", "b-2026-03-14", "b-2026-03-15"]


def test_no_rule_keeps_everything() -> None:
    assert len(kept(RetentionPolicy(), daily(50))) == 50


def test_periods_are_computed_in_the_policy_zone() -> None:
    # 23:30 UTC on Mar 14 is already Mar 15 in Kolkata (+05:30): both backups fall on the same local day
    a = Backup("a", datetime(2026, 3, 14, 23, 30, tzinfo=UTC))
    b = Backup("b", datetime(2026, 3, 15, 1, 0, tzinfo=UTC))
    assert sorted(n for n, _ in [(x.name, 0) for x, _ in RetentionPolicy(keep_daily=2).plan([a, b], NOW).keep]) == [
        "a",
        "b",
    ]
    kolkata = RetentionPolicy(keep_daily=2, tz="Asia/Kolkata").plan([a, b], NOW)
    assert [x.name for x, _ in kolkata.keep] == ["b"]


def test_reasons_name_every_rule() -> None:
    plan = RetentionPolicy(keep_daily=1, keep_monthly=1, keep_yearly=1).plan(daily(3), NOW)
    first = plan.decisions[0]
    assert first.reasons == ("newest backup", "daily 2026-03-15", "monthly 2026-03", "yearly 2026")
    assert plan.decisions[1].reasons == ("no keep-rule selects it",)


def test_keep_values_are_validated() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DB_URI": "sqlite:///x.db", "RCLONE_REMOTE": "r:", "RETENTION_KEEP_WEEKLY": "-1"})
    assert info.value.variable == "RETENTION_KEEP_WEEKLY"
    s = Settings.from_env(
        {
            "DB_URI": "sqlite:///x.db",
            "RCLONE_REMOTE": "r:",
            "RETENTION_KEEP_DAILY": "7",
            "RETENTION_KEEP_YEARLY": "2",
            "TZ": "Europe/Paris",
        }
    )
    assert s.retention.keep_rules == {"daily": 7, "yearly": 2} and s.retention.tz == "Europe/Paris"
    assert Settings.create("sqlite:///x.db", remote="r:", retention_keep={"weekly": 4}).retention.keep_weekly == 4
    with pytest.raises(ConfigError):
        Settings.create("sqlite:///x.db", remote="r:", retention_keep={"fortnightly": 4})


# -- properties over random histories -----------------------------------------------------------
times = st.datetimes(min_value=datetime(2023, 1, 1), max_value=datetime(2026, 3, 15, 11), timezones=st.just(UTC))
histories = st.lists(times, min_size=1, max_size=60, unique=True).map(
    lambda ts: [Backup(f"b{i:03d}", t) for i, t in enumerate(sorted(ts))]
)
counts = st.integers(min_value=0, max_value=6)
policies = st.builds(
    RetentionPolicy,
    max_files=counts,
    max_days=st.sampled_from([0, 0, 1, 7, 30.5, 400]),
    keep_hourly=counts,
    keep_daily=counts,
    keep_weekly=counts,
    keep_monthly=counts,
    keep_yearly=counts,
    tz=st.sampled_from(["UTC", "Asia/Kolkata", "America/New_York"]),
)


def representatives(backups: list[Backup], key: Callable[[datetime], str], n: int, tz: str) -> set[str]:
    """Independent formulation of a keep-rule: group by period, newest per group, the n newest groups."""
    groups: dict[str, Backup] = {}
    for b in backups:
        k = key(b.taken_at.astimezone(ZoneInfo(tz)))
        if k not in groups or (b.taken_at, b.name) > (groups[k].taken_at, groups[k].name):
            groups[k] = b
    newest = sorted(groups.values(), key=lambda b: (b.taken_at, b.name), reverse=True)[:n]
    return {b.name for b in newest}


@settings(max_examples=300, deadline=None)
@given(histories, policies)
def test_newest_is_always_kept(history: list[Backup], policy: RetentionPolicy) -> None:
    plan = policy.plan(history, NOW)
    newest = max(history, key=lambda b: (b.taken_at, b.name))
    assert newest.name in {b.name for b, _ in plan.keep}
    assert len(plan.decisions) == len(history)


@settings(max_examples=300, deadline=None)
@given(histories, policies)
def test_every_keep_rule_keeps_its_promise(history: list[Backup], policy: RetentionPolicy) -> None:
    plan = policy.plan(history, NOW)
    kept_names = {b.name for b, _ in plan.keep}
    protected: set[str] = set()
    for period, key in PERIODS:
        n = policy.keep_rules.get(period, 0)
        if n:
            reps = representatives(history, key, n, policy.tz)
            protected |= reps
            # the rule's reason is on exactly its representatives
            tagged = {d.backup.name for d in plan.decisions if any(r.startswith(period + " ") for r in d.reasons)}
            assert tagged == reps
    # the whole documented rule, formulated independently: protected = newest + keep-rule picks +
    # younger than max-days (everything when neither kind of rule is set); max-files caps it, oldest out
    order = sorted(history, key=lambda b: (b.taken_at, b.name), reverse=True)
    protected.add(order[0].name)
    if policy.max_days:
        protected |= {b.name for b in history if b.taken_at >= NOW - timedelta(days=policy.max_days)}
    if not policy.keep_rules and not policy.max_days:
        protected = {b.name for b in history}
    expected = [b.name for b in order if b.name in protected]
    if policy.max_files:
        expected = expected[: policy.max_files]
    assert kept_names == set(expected)


@settings(max_examples=300, deadline=None)
@given(histories, policies)
def test_plan_is_idempotent(history: list[Backup], policy: RetentionPolicy) -> None:
    first = policy.plan(history, NOW)
    left = [b for b, _ in first.keep]
    assert policy.plan(left, NOW).to_delete == []


@settings(max_examples=300, deadline=None)
@given(
    histories,
    st.sampled_from([p for p, _ in PERIODS]),
    st.integers(1, 6),
    st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=40)),
)
def test_a_new_backup_only_displaces_what_the_rule_says(
    history: list[Backup], period: str, n: int, gap: timedelta
) -> None:
    """Adding a newer backup changes a rule's picks only in the two ways the semantics allow."""
    policy = RetentionPolicy(**{f"keep_{period}": n})  # type: ignore[arg-type]
    key = dict(PERIODS)[period]
    newest = max(b.taken_at for b in history)
    new = Backup("new", newest + gap)
    before = {b.name for b, _ in policy.plan(history, NOW).keep}
    after = {b.name for b, _ in policy.plan([*history, new], NOW).keep}
    new_key = key(new.taken_at)
    same_period = {b.name for b in history if key(b.taken_at) == new_key}
    if same_period:
        # the new backup replaces its period's representative; nothing else moves
        assert after == (before - same_period) | {"new"}
    else:
        # a new period: it joins, and only the oldest period falls out if the window was full
        assert "new" in after
        assert after - {"new"} <= before
        assert len(before - after) <= 1
        if len(before - after) == 1:
            dropped = (before - after).pop()
            assert all(
                next(b.taken_at for b in history if b.name == dropped)
                <= next(b.taken_at for b in history if b.name == other)
                for other in before
            )


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"retention_max_files": -1}, "retention_max_files"),
        ({"retention_max_days": -2}, "retention_max_days"),
        ({"retention_max_days": 1e308}, "retention_max_days"),
        ({"retention_keep": {"daily": -1}}, "retention_keep['daily']"),
    ],
)
def test_library_errors_name_the_parameter_not_the_variable(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.create("sqlite:///x.db", remote="r:", **kwargs)  # type: ignore[arg-type]
    assert info.value.variable == parameter and "RETENTION_" not in str(info.value)

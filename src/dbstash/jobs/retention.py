"""Retention: a pure plan over (backups, now, policy); the caller carries it out.

The rule, defined once (docs/retention.md has worked examples):

1. A backup is *protected* if it is the newest backup, if a keep-rule selects it (the newest backup
   of each of the last N hours/days/ISO weeks/months/years that have a backup, periods in the
   policy's time zone, as ``restic forget`` and ``borg prune`` do), or if it is younger than
   ``max_days``. When no keep-rule and no ``max_days`` is set, every backup is protected.
2. Every backup that is not protected is deleted.
3. ``max_files`` is a ceiling applied last: if more than N backups survive, the oldest survivors are
   deleted until N remain — never the newest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dbstash.errors import ConfigError
from dbstash.jobs.naming import same_second_order


@dataclass(frozen=True, slots=True)
class Backup:
    """A complete backup of this job on the remote: its name, size and when it was taken (UTC)."""

    name: str
    taken_at: datetime
    size: int = -1


@dataclass(frozen=True, slots=True)
class Decision:
    """What the plan does with one backup, and every reason for it."""

    backup: Backup
    keep: bool
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        """The reasons as one phrase."""
        return ", ".join(self.reasons)


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """Which backups stay and which go, newest first, each with its reasons."""

    decisions: tuple[Decision, ...]

    @property
    def keep(self) -> tuple[tuple[Backup, str], ...]:
        """(backup, reason) pairs of the backups that stay."""
        return tuple((d.backup, d.reason) for d in self.decisions if d.keep)

    @property
    def delete(self) -> tuple[tuple[Backup, str], ...]:
        """(backup, reason) pairs of the backups that go."""
        return tuple((d.backup, d.reason) for d in self.decisions if not d.keep)

    @property
    def to_delete(self) -> list[Backup]:
        """The backups to remove."""
        return [d.backup for d in self.decisions if not d.keep]

    def to_dict(self) -> list[dict[str, object]]:
        """JSON-ready rows: name, taken_at (ISO 8601 UTC), size, action, reasons."""
        return [
            {
                "name": d.backup.name,
                "taken_at": d.backup.taken_at.isoformat(),
                "size": d.backup.size,
                "action": "keep" if d.keep else "delete",
                "reasons": list(d.reasons),
            }
            for d in self.decisions
        ]


PeriodKey = Callable[[datetime], str]

#: Keep-rules in order of period length: name, key of a local time's period (ISO weeks for "weekly").
PERIODS: tuple[tuple[str, PeriodKey], ...] = (
    ("hourly", lambda t: t.strftime("%Y-%m-%d %H:00")),
    ("daily", lambda t: t.strftime("%Y-%m-%d")),
    ("weekly", lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
    ("monthly", lambda t: t.strftime("%Y-%m")),
    ("yearly", lambda t: t.strftime("%Y")),
)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """``RETENTION_MAX_FILES``, ``RETENTION_MAX_DAYS`` and ``RETENTION_KEEP_*`` (0 = off everywhere).

    Examples:
        The spec's limits:


        >>> from datetime import UTC
        >>> now = datetime(2026, 1, 10, tzinfo=UTC)
        >>> bs = [Backup(f"b{d}", datetime(2026, 1, d, tzinfo=UTC)) for d in range(1, 10)]
        >>> [b.name for b in RetentionPolicy(max_files=3).plan(bs, now).to_delete]
        ['b6', 'b5', 'b4', 'b3', 'b2', 'b1']
        >>> [b.name for b in RetentionPolicy(keep_daily=2, keep_weekly=2).plan(bs, now).to_delete]
        ['b7', 'b6', 'b5', 'b3', 'b2', 'b1']
    """

    max_files: int = 0
    max_days: float = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    tz: str = "UTC"

    def __post_init__(self) -> None:
        # a library part: errors name its own parameters (the env path validated the variables before)
        for parameter, value in (
            ("max_files", self.max_files),
            ("keep_hourly", self.keep_hourly),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
            ("keep_yearly", self.keep_yearly),
        ):
            if not isinstance(value, int) or value < 0:
                raise ConfigError(parameter, "a whole number >= 0 (0 turns it off)", str(value))
        if not 0 <= self.max_days <= 36500:
            raise ConfigError("max_days", "a number of days from 0 to 36500 (0 keeps every backup)", str(self.max_days))

    @property
    def keep_rules(self) -> dict[str, int]:
        """The keep-rules that are on, by period name."""
        counts = {
            "hourly": self.keep_hourly,
            "daily": self.keep_daily,
            "weekly": self.keep_weekly,
            "monthly": self.keep_monthly,
            "yearly": self.keep_yearly,
        }
        return {k: v for k, v in counts.items() if v > 0}

    @property
    def enabled(self) -> bool:
        """Whether this policy can ever delete anything."""
        return self.max_files > 0 or self.max_days > 0 or bool(self.keep_rules)

    def plan(self, backups: Sequence[Backup], now: datetime, *, newest: str | None = None) -> RetentionPlan:
        """Decide, without side effects, which of *backups* to delete at *now*.

        *backups* must hold only complete backups made by this job (the caller filters by template
        and drops partial uploads). Ties in time are broken by name, so the plan is deterministic;
        *newest* names the backup that wins a tie (the one a run just wrote: two runs in one second).
        """
        ordered = sorted(backups, key=lambda b: (b.taken_at, b.name == newest, same_second_order(b.name)), reverse=True)
        zone = ZoneInfo(self.tz)
        reasons: dict[int, list[str]] = {i: [] for i in range(len(ordered))}
        if ordered:
            reasons[0].append("newest backup")
        rules = self.keep_rules
        for period, key in PERIODS:
            if rules.get(period, 0):
                _mark_periods(ordered, reasons, period, key=key, limit=rules[period], zone=zone)
        cutoff = now - timedelta(days=self.max_days) if self.max_days > 0 else None
        if cutoff is not None:
            for i, b in enumerate(ordered):
                if b.taken_at >= cutoff:
                    reasons[i].append(f"within {self.max_days:g} days")
        protect_all = not rules and cutoff is None
        decisions: list[Decision] = []
        survivors = 0
        for i, b in enumerate(ordered):
            protected = protect_all or bool(reasons[i])
            if not protected:
                decisions.append(Decision(b, False, (self._why_not(cutoff is not None),)))
            elif self.max_files > 0 and survivors >= self.max_files:
                # the rules that wanted it are kept in the reasons: the ceiling overrides them, visibly
                ceiling = f"beyond the newest {self.max_files} (RETENTION_MAX_FILES)"
                decisions.append(Decision(b, False, (*reasons[i], ceiling)))
            else:
                survivors += 1
                decisions.append(Decision(b, True, tuple(reasons[i]) or ("no rule deletes it",)))
        return RetentionPlan(tuple(decisions))

    def _why_not(self, by_age: bool) -> str:
        """Why a backup no rule protects is deleted."""
        if not by_age:
            return "no keep-rule selects it"
        if self.keep_rules:
            return f"older than {self.max_days:g} days and no keep-rule selects it"
        return f"older than {self.max_days:g} days"


def _mark_periods(
    ordered: Sequence[Backup],
    reasons: dict[int, list[str]],
    period: str,
    *,
    key: PeriodKey,
    limit: int,
    zone: ZoneInfo,
) -> None:
    """Give the newest backup of each of the last *limit* periods (newest first) a reason to stay."""
    seen: set[str] = set()
    for i, b in enumerate(ordered):  # newest first: the first backup met in a period is its newest
        k = key(b.taken_at.astimezone(zone))
        if k in seen:
            continue
        if len(seen) == limit:
            break
        seen.add(k)
        reasons[i].append(f"{period} {k}")

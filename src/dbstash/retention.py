"""Retention: a pure plan over (backups, now, policy); the caller carries it out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dbstash.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Backup:
    """A complete backup of this job on the remote: its name, size and when it was taken (UTC)."""

    name: str
    taken_at: datetime
    size: int = -1


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """Which backups stay and which go, each with the reason."""

    keep: tuple[tuple[Backup, str], ...]
    delete: tuple[tuple[Backup, str], ...]

    @property
    def to_delete(self) -> list[Backup]:
        """The backups to remove."""
        return [b for b, _ in self.delete]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The spec's ``RETENTION_MAX_FILES`` and ``RETENTION_MAX_DAYS`` (0 = unlimited).

    Rules, in order: the newest backup is always kept; a backup older than *max_days* goes; of the
    rest, only the *max_files* newest stay. Example:

        >>> from datetime import UTC
        >>> now = datetime(2026, 1, 10, tzinfo=UTC)
        >>> bs = [Backup(f"b{d}", datetime(2026, 1, d, tzinfo=UTC)) for d in range(1, 10)]
        >>> [b.name for b in RetentionPolicy(max_files=3).plan(bs, now).to_delete]
        ['b6', 'b5', 'b4', 'b3', 'b2', 'b1']
    """

    max_files: int = 0
    max_days: float = 0

    def __post_init__(self) -> None:
        if self.max_files < 0:
            raise ConfigError("RETENTION_MAX_FILES", "a whole number >= 0 (0 keeps every backup)", str(self.max_files))
        if self.max_days < 0:
            raise ConfigError("RETENTION_MAX_DAYS", "a number of days >= 0 (0 keeps every backup)", str(self.max_days))

    @property
    def enabled(self) -> bool:
        """Whether this policy can ever delete anything."""
        return self.max_files > 0 or self.max_days > 0

    def plan(self, backups: Sequence[Backup], now: datetime) -> RetentionPlan:
        """Decide, without side effects, which of *backups* to delete at *now*.

        *backups* must hold only complete backups made by this job (the caller filters by template
        and drops partial uploads). Ties in time are broken by name, so the plan is deterministic.
        """
        ordered = sorted(backups, key=lambda b: (b.taken_at, b.name), reverse=True)
        keep: list[tuple[Backup, str]] = []
        delete: list[tuple[Backup, str]] = []
        cutoff = now - timedelta(days=self.max_days) if self.max_days > 0 else None
        for index, b in enumerate(ordered):
            if index == 0:
                keep.append((b, "newest backup"))
            elif cutoff is not None and b.taken_at < cutoff:
                delete.append((b, f"older than {self.max_days:g} days"))
            elif self.max_files > 0 and len(keep) >= self.max_files:
                delete.append((b, f"beyond the newest {self.max_files}"))
            else:
                keep.append((b, "within limits"))
        return RetentionPlan(tuple(keep), tuple(delete))

"""The Notifier seam: an event about a run, and objects that deliver it somewhere."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from dbstash.notify.http import DEFAULT_TIMEOUT, deliver
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.units import human_bytes

Stage = Literal["start", "success", "failure"]
#: ``NOTIFY_ON``: which outcomes a message-style notifier reports.
NotifyOn = Literal["always", "failure", "success"]


def wanted(notify_on: NotifyOn, stage: Stage) -> bool:
    """``always`` -> success and failure; ``failure``/``success`` -> that one. Start events are for pings."""
    if stage == "start":
        return False
    return notify_on in ("always", stage)


@dataclass(frozen=True, slots=True)
class RunItem:
    """One database of a multi-database run, as notifications and hooks report it."""

    database: str
    ok: bool
    size: int | None = None
    remote_path: str | None = None
    error: str | None = None
    error_type: str | None = None

    def line(self) -> str:
        """``ok, 12.0 MiB`` or ``FAILED (DumpFailed): ...``."""
        if self.ok:
            return "ok" + (f", {human_bytes(self.size)}" if self.size is not None else "")
        return f"FAILED ({self.error_type}): {self.error}"

    def to_dict(self) -> dict[str, object]:
        return {
            "database": self.database,
            "status": "success" if self.ok else "failure",
            "size": self.size,
            "remote_path": self.remote_path,
            "error": GLOBAL_REDACTOR(self.error) if self.error else None,
            "error_type": self.error_type,
        }


@dataclass(frozen=True, slots=True)
class RunEvent:
    """What notifiers and hooks are told about a run. Every text field is already redacted."""

    stage: Stage
    engine: str
    database: str
    backup_id: str
    remote_path: str | None = None
    size: int | None = None
    sha256: str | None = None
    duration: float | None = None
    error: str | None = None
    error_type: str | None = None
    #: ``backup``, or ``verify`` for the restore drill (``VERIFY_SCHEDULE``)
    kind: str = "backup"
    #: extra text for the message, e.g. verify's row counts
    detail: str | None = None
    #: a multi-database run: one line per database (and the globals), in the order they were taken
    items: tuple[RunItem, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the run succeeded (False for start and failure events)."""
        return self.stage == "success"

    def summary(self) -> str:
        """One line for a chat message or an email subject."""
        if self.stage == "start":
            return f"dbstash: {self.kind} of {self.engine}/{self.database} started"
        verb = "succeeded" if self.ok else "FAILED"
        if self.items:
            failed = [i.database for i in self.items if not i.ok]
            count = f" ({len(self.items)} objects" + (f", failed: {', '.join(failed)})" if failed else ")")
            return f"dbstash: {self.kind} of {self.engine}/{self.database}{count} {verb}"
        return f"dbstash: {self.kind} of {self.engine}/{self.database} {verb}"

    def fields(self) -> list[tuple[str, str]]:
        """(label, value) pairs for structured messages."""
        rows = [("Status", self.stage), ("Engine", self.engine), ("Database", self.database)]
        if self.size is not None:
            rows.append(("Size", human_bytes(self.size)))
        if self.duration is not None:
            rows.append(("Duration", f"{self.duration:.1f} s"))
        if self.remote_path:
            rows.append(("Remote path", self.remote_path))
        if self.sha256:
            rows.append(("SHA-256", self.sha256))
        if self.detail:
            rows.append(("Detail", self.detail))
        rows += [(f"Database {item.database}", item.line()) for item in self.items]
        if self.error:
            rows.append(("Error", self.error))
        rows.append(("Backup id", self.backup_id))
        return [(k, GLOBAL_REDACTOR(v)) for k, v in rows]

    def text(self) -> str:
        """A plain-text body."""
        return self.summary() + "\n\n" + "\n".join(f"{k}: {v}" for k, v in self.fields())

    def to_dict(self) -> dict[str, object]:
        """The generic JSON payload."""
        return {
            "event": f"{self.kind}.{self.stage}",
            "status": self.stage,
            "engine": self.engine,
            "database": self.database,
            "backup_id": self.backup_id,
            "remote_path": self.remote_path,
            "size": self.size,
            "sha256": self.sha256,
            "duration": self.duration,
            "error": GLOBAL_REDACTOR(self.error) if self.error else None,
            "error_type": self.error_type,
            "detail": self.detail,
            "databases": [item.to_dict() for item in self.items] if self.items else None,
        }


class Notifier(ABC):
    """Delivers run events. ``wants`` filters which stages it is told about.

    Implementations block (they run in a worker thread), bound every network call with a timeout,
    retry transient failures a few times, and raise on final failure; the caller logs it and the
    backup's outcome never changes.
    """

    #: Short name for logs (never the URL: webhook URLs are secrets).
    kind: str = "notifier"

    @abstractmethod
    def wants(self, stage: Stage) -> bool:
        """Whether this notifier is told about *stage* events."""

    @abstractmethod
    def send(self, event: RunEvent) -> None:
        """Deliver *event*; raise on failure after retries."""


class MessageNotifier(Notifier):
    """A webhook that gets one JSON message per outcome that ``NOTIFY_ON`` selects."""

    def __init__(self, url: str, notify_on: NotifyOn = "failure", *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url, self.notify_on, self.timeout = url, notify_on, timeout

    def wants(self, stage: Stage) -> bool:
        return wanted(self.notify_on, stage)

    @abstractmethod
    def payload(self, event: RunEvent) -> dict[str, object]:
        """The JSON body for *event*."""

    def send(self, event: RunEvent) -> None:
        deliver("POST", self.url, self.payload(event), timeout=self.timeout)

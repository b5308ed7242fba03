"""Ping monitors in the healthchecks.io style: ``/start``, the bare URL on success, ``/fail`` on failure."""

from __future__ import annotations

from dbstash.notify.base import Notifier, RunEvent, Stage
from dbstash.notify.http import DEFAULT_TIMEOUT, deliver


class PingNotifier(Notifier):
    """Told about every stage, whatever ``NOTIFY_ON`` says: a monitor must hear every run to judge it."""

    kind = "ping"

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def wants(self, stage: Stage) -> bool:
        return True

    def url_for(self, stage: Stage) -> str:
        """The URL pinged for *stage*."""
        return {"start": self.url + "/start", "success": self.url, "failure": self.url + "/fail"}[stage]

    def send(self, event: RunEvent) -> None:
        body = event.to_dict() if event.stage == "failure" else None  # healthchecks.io shows a failure's body
        deliver("POST", self.url_for(event.stage), body, timeout=self.timeout)

"""Any other webhook URL: the event as plain JSON."""

from __future__ import annotations

from dbstash.notify.base import Notifier, RunEvent, Stage
from dbstash.notify.http import DEFAULT_TIMEOUT, deliver
from dbstash.notify.policy import NotifyOn, wanted


class WebhookNotifier(Notifier):
    """POSTs :meth:`RunEvent.to_dict` as JSON."""

    kind = "webhook"

    def __init__(self, url: str, notify_on: NotifyOn = "failure", *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url, self.notify_on, self.timeout = url, notify_on, timeout

    def wants(self, stage: Stage) -> bool:
        return wanted(self.notify_on, stage)

    def send(self, event: RunEvent) -> None:
        deliver("POST", self.url, event.to_dict(), timeout=self.timeout)

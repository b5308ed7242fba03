"""Slack incoming webhooks (``https://hooks.slack.com/services/...``)."""

from __future__ import annotations

from dbstash.notify.base import Notifier, RunEvent, Stage
from dbstash.notify.http import DEFAULT_TIMEOUT, deliver
from dbstash.notify.policy import NotifyOn, wanted


class SlackNotifier(Notifier):
    """Posts ``{"text", "attachments": [{"color", "fields"}]}`` to a Slack incoming webhook."""

    kind = "slack"

    def __init__(self, url: str, notify_on: NotifyOn = "failure", *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url, self.notify_on, self.timeout = url, notify_on, timeout

    def wants(self, stage: Stage) -> bool:
        return wanted(self.notify_on, stage)

    def payload(self, event: RunEvent) -> dict[str, object]:
        """The JSON body."""
        return {
            "text": event.summary(),
            "attachments": [
                {
                    "color": "good" if event.ok else "danger",
                    "fields": [
                        {"title": k, "value": v, "short": k not in ("Error", "Remote path", "SHA-256")}
                        for k, v in event.fields()
                    ],
                }
            ],
        }

    def send(self, event: RunEvent) -> None:
        deliver("POST", self.url, self.payload(event), timeout=self.timeout)

"""Discord webhooks (``https://discord.com/api/webhooks/...``)."""

from __future__ import annotations

from dbstash.notify.base import Notifier, RunEvent, Stage
from dbstash.notify.http import DEFAULT_TIMEOUT, deliver
from dbstash.notify.policy import NotifyOn, wanted

GREEN, RED = 0x2ECC71, 0xE74C3C


class DiscordNotifier(Notifier):
    """Posts ``{"content", "embeds": [{"title", "color", "fields"}]}`` to a Discord webhook."""

    kind = "discord"

    def __init__(self, url: str, notify_on: NotifyOn = "failure", *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url, self.notify_on, self.timeout = url, notify_on, timeout

    def wants(self, stage: Stage) -> bool:
        return wanted(self.notify_on, stage)

    def payload(self, event: RunEvent) -> dict[str, object]:
        """The JSON body (field values are cut to Discord's 1024-character limit)."""
        return {
            "content": event.summary(),
            "embeds": [
                {
                    "title": event.summary(),
                    "color": GREEN if event.ok else RED,
                    "fields": [
                        {"name": k, "value": v[:1024], "inline": k in ("Status", "Engine", "Size", "Duration")}
                        for k, v in event.fields()
                    ],
                }
            ],
        }

    def send(self, event: RunEvent) -> None:
        deliver("POST", self.url, self.payload(event), timeout=self.timeout)

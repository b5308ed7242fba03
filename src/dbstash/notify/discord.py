"""Discord webhooks (``https://discord.com/api/webhooks/...``)."""

from __future__ import annotations

from dbstash.notify.base import MessageNotifier, RunEvent

GREEN, RED = 0x2ECC71, 0xE74C3C


class DiscordNotifier(MessageNotifier):
    """Posts ``{"content", "embeds": [{"title", "color", "fields"}]}`` to a Discord webhook."""

    kind = "discord"

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

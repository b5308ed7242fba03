"""Slack incoming webhooks (``https://hooks.slack.com/services/...``)."""

from __future__ import annotations

from dbstash.notify.base import MessageNotifier, RunEvent


class SlackNotifier(MessageNotifier):
    """Posts ``{"text", "attachments": [{"color", "fields"}]}`` to a Slack incoming webhook."""

    kind = "slack"

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

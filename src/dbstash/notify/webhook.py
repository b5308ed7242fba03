"""Any other webhook URL: the event as plain JSON."""

from __future__ import annotations

from dbstash.notify.base import MessageNotifier, RunEvent


class WebhookNotifier(MessageNotifier):
    """POSTs [`RunEvent.to_dict()`][dbstash.RunEvent.to_dict] as JSON."""

    kind = "webhook"

    def payload(self, event: RunEvent) -> dict[str, object]:
        """The event as plain JSON."""
        return event.to_dict()

"""``NOTIFY_ON``: which outcomes a message-style notifier reports."""

from __future__ import annotations

from typing import Literal

from dbstash.notify.base import Stage

NotifyOn = Literal["always", "failure", "success"]


def wanted(notify_on: NotifyOn, stage: Stage) -> bool:
    """``always`` -> success and failure; ``failure``/``success`` -> that one. Start events are for pings."""
    if stage == "start":
        return False
    return notify_on in ("always", stage)

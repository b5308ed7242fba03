"""Notifications: Slack, Discord, generic webhooks, email and ping monitors, one module each.

`notify()` delivers an event to every notifier that wants it, concurrently, each in a worker
thread with a bound; a notifier that fails is logged and never changes the backup's outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import anyio

from dbstash.errors import ConfigError
from dbstash.logs import get_logger
from dbstash.notify.base import Notifier, NotifyOn, RunEvent, Stage
from dbstash.notify.discord import DiscordNotifier
from dbstash.notify.email import EmailNotifier
from dbstash.notify.http import DEFAULT_TIMEOUT
from dbstash.notify.ping import PingNotifier
from dbstash.notify.slack import SlackNotifier
from dbstash.notify.webhook import WebhookNotifier

log = get_logger("dbstash.notify")
FORMATS = ("auto", "slack", "discord", "json")


def webhook_notifier(
    url: str, notify_on: NotifyOn = "failure", fmt: str = "auto", timeout: float = DEFAULT_TIMEOUT
) -> Notifier:
    """The notifier for *url*: Slack or Discord detected from the URL (host, else path), else generic JSON.

    Slack: host ``hooks.slack.com`` or a path starting ``/services/``. Discord: host ``discord.com`` /
    ``discordapp.com`` or a path starting ``/api/webhooks/``. *fmt* forces one (``NOTIFY_WEBHOOK_FORMAT``).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("NOTIFY_WEBHOOK_URL", "an http(s):// webhook URL (Slack, Discord or any JSON endpoint)")
    if fmt == "auto":
        host, path = (parts.hostname or "").lower(), parts.path
        if host.endswith("slack.com") or path.startswith("/services/"):
            fmt = "slack"
        elif host.endswith(("discord.com", "discordapp.com")) or path.startswith("/api/webhooks/"):
            fmt = "discord"
        else:
            fmt = "json"
    if fmt == "slack":
        return SlackNotifier(url, notify_on, timeout=timeout)
    if fmt == "discord":
        return DiscordNotifier(url, notify_on, timeout=timeout)
    return WebhookNotifier(url, notify_on, timeout=timeout)


#: Entry-point group through which installed packages add notifiers. Each entry point is a callable
#: ``(environ) -> Notifier | None`` that reads its own variables (None: not configured here).
ENTRY_POINT_GROUP = "dbstash.notifiers"


def plugin_notifiers(environ: Mapping[str, str]) -> list[Notifier]:
    """The notifiers installed packages configure from *environ* (``dbstash.notifiers`` entry points).

    A third-party notifier is a package, not a patch of dbstash::

        [project.entry-points."dbstash.notifiers"]
        matrix = "dbstash_matrix:from_env"   # def from_env(environ) -> Notifier | None

    A factory raising [`ConfigError`][dbstash.ConfigError] (naming its variable) stops start-up with exit 2.
    """
    from dbstash.plugins import entry_points_of  # noqa: PLC0415 - only the env path needs it

    found: list[Notifier] = []
    for ep in entry_points_of(ENTRY_POINT_GROUP):
        notifier = ep.load()(environ)
        if notifier is None:
            continue
        if not isinstance(notifier, Notifier):
            raise TypeError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) returned no Notifier")
        found.append(notifier)
    return found


async def notify(notifiers: Sequence[Notifier], event: RunEvent, *, limit: float = 120.0) -> list[str]:
    """Deliver *event* to each notifier that wants it; returns the kinds that failed (already logged)."""
    failed: list[str] = []

    async def one(n: Notifier) -> None:
        try:
            with anyio.fail_after(limit):
                await anyio.to_thread.run_sync(n.send, event, abandon_on_cancel=True)
            log.info("notified %s (%s)", n.kind, event.stage)
        except Exception as exc:  # a notifier never decides the backup's outcome
            failed.append(n.kind)
            log.warning("could not notify %s (%s): %s", n.kind, event.stage, exc or type(exc).__name__)

    wanted = [n for n in notifiers if n.wants(event.stage)]
    if wanted:
        async with anyio.create_task_group() as tg:
            for n in wanted:
                tg.start_soon(one, n)
    return failed


__all__ = [
    "FORMATS",
    "DiscordNotifier",
    "EmailNotifier",
    "Notifier",
    "PingNotifier",
    "RunEvent",
    "SlackNotifier",
    "Stage",
    "WebhookNotifier",
    "notify",
    "webhook_notifier",
]

"""apprise: one variable (``NOTIFY_URLS``) reaches the 100+ services the apprise library speaks to.

An optional extra (``pip install 'dbstash[apprise]'``, in every dbstash image): apprise is imported
only when ``NOTIFY_URLS`` is set. The same rules as the built-in notifiers:

- ``NOTIFY_ON`` decides which outcomes are sent;
- each URL gets ``cto``/``rto`` (apprise's connect and read timeouts) from ``NOTIFY_TIMEOUT`` unless
  it sets its own, and up to 3 attempts (tenacity, backoff ≤ 4 s); the caller bounds the whole
  delivery as for every notifier;
- the URLs are secrets (their tokens are in the host or the path): they are registered with the
  redactor, apprise's own log is silenced (its messages can carry a URL), and failures name only
  the scheme and the host;
- a failure is logged and never changes the backup's outcome.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from dbstash.errors import ConfigError
from dbstash.notify.base import Notifier, NotifyOn, RunEvent, Stage, wanted
from dbstash.notify.http import ATTEMPTS, DEFAULT_TIMEOUT, DeliveryError
from dbstash.redact import GLOBAL_REDACTOR

VARIABLE = "NOTIFY_URLS"
EXPECTED = "apprise URLs (json://host/path, mailto://..., tgram://..., ...), separated by spaces or commas"
#: a URL starts where a scheme follows a separator: commas inside a URL's query (to=a@x,b@y) stay
_SPLIT = re.compile(r"[\s,]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def split_urls(text: str) -> list[str]:
    """``NOTIFY_URLS`` -> the URLs (separated by spaces, new lines or commas)."""
    return [u.strip().strip(",") for u in _SPLIT.split(text.strip()) if u.strip().strip(",")]


#: a DNS label as people write host names: lower case, digits, inner hyphens
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def surely_host(text: str) -> bool:
    """Whether *text* is surely a host name or address, not a token that happens to hold dots (a JWT,
    ``hunter2.pass.word``): an IP address, ``localhost``, or lower-case DNS labels ending in a
    top-level domain of letters. Anything else is masked."""
    if text == "localhost":
        return True
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        pass
    labels = text.split(".")
    return (
        len(labels) >= 2
        and len(text) <= 253
        and all(_LABEL.match(label) for label in labels)
        and labels[-1].isalpha()
        and 2 <= len(labels[-1]) <= 24
    )


def register_secrets(url: str) -> None:
    """Mask *url* and its token-like parts (apprise services carry tokens in the host, the user info
    or the path); only parts that are surely host names stay readable."""
    GLOBAL_REDACTOR.add(url)
    rest = url.split("://", 1)[-1]
    GLOBAL_REDACTOR.add(rest)
    netloc = rest.split("/", 1)[0]
    userinfo = netloc.rpartition("@")[0]
    if not userinfo and ":" in netloc and not netloc.startswith("[") and not netloc.partition(":")[2].isdigit():
        userinfo = netloc  # user:password without an @ (jsonx://ops:hunter2.pass.word/x)
    if userinfo:
        GLOBAL_REDACTOR.add(userinfo, *userinfo.split(":"))
    for part in re.split(r"[/@:?&=#]", rest):
        if len(part) >= 6 and not part.isdigit() and not surely_host(part):
            GLOBAL_REDACTOR.add(part)


def describe(url: str) -> str:
    """``scheme://host``: what a log may say about *url* (the host only when it is surely one)."""
    scheme, _, rest = url.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = netloc.rpartition("@")[2]
    host = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host.split(":", 1)[0]
    if "@" not in netloc and not netloc.startswith("[") and not netloc.partition(":")[2].isdigit():
        host = host if ":" not in netloc else ""  # ops:hunter2.pass.word: a user and password, not host:port
    return f"{scheme}://{host if surely_host(host) else '…'}"


def _load() -> Any:
    try:
        import apprise  # noqa: PLC0415 - an optional extra, loaded only when NOTIFY_URLS is set
    except ImportError:
        raise ConfigError(
            VARIABLE, "the apprise library: pip install 'dbstash[apprise]' (in every dbstash image)"
        ) from None
    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)  # its messages can carry a URL
    return apprise


def _with_timeouts(url: str, timeout: float) -> str:
    query = {k for k, _ in parse_qsl(urlsplit(url).query)}
    extra = [f"{k}={v:g}" for k, v in (("cto", min(5.0, timeout)), ("rto", timeout)) if k not in query]
    if not extra:
        return url
    return url + ("&" if "?" in url else "?") + "&".join(extra)


class AppriseNotifier(Notifier):
    """Sends success/failure messages to apprise URLs (``NOTIFY_URLS``).

    Examples:
        >>> import dbstash
        >>> n = dbstash.AppriseNotifier(["json://127.0.0.1:9/hook"], "failure")
        >>> n.kind, n.wants("failure"), n.wants("success")
        ('apprise', True, False)
    """

    kind = "apprise"

    def __init__(
        self, urls: Sequence[str], notify_on: NotifyOn = "failure", *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if not urls:
            raise ConfigError(VARIABLE, EXPECTED)
        apprise = _load()
        self._apprise = apprise
        self.notify_on = notify_on
        self.timeout = timeout
        self.urls = tuple(urls)
        for url in self.urls:
            register_secrets(url)
            if not apprise.Apprise().add(_with_timeouts(url, timeout)):
                raise ConfigError(VARIABLE, EXPECTED + " (apprise does not take this one)", describe(url))

    def wants(self, stage: Stage) -> bool:
        return wanted(self.notify_on, stage)

    def send(self, event: RunEvent) -> None:
        from tenacity import retry, retry_if_result, stop_after_attempt, wait_exponential  # noqa: PLC0415

        apprise = self._apprise
        kind = apprise.NotifyType.SUCCESS if event.ok else apprise.NotifyType.FAILURE

        @retry(
            retry=retry_if_result(lambda ok: not ok),
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_exponential(multiplier=0.5, max=4),
            retry_error_callback=lambda _state: False,
        )
        def attempt(url: str) -> bool:
            one = apprise.Apprise()
            one.add(_with_timeouts(url, self.timeout))
            return bool(one.notify(title=event.summary(), body=GLOBAL_REDACTOR(event.text()), notify_type=kind))

        failed = [describe(url) for url in self.urls if not attempt(url)]
        if failed:
            raise DeliveryError(f"apprise could not deliver to {', '.join(failed)} ({ATTEMPTS} attempts each)")


__all__ = ["AppriseNotifier", "describe", "split_urls"]

"""HTTP delivery shared by the webhook notifiers: requests with timeouts, tenacity retries.

requests and tenacity are imported on first delivery: together they cost ~0.15 s of start-up,
which a backup without webhooks should not pay.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

#: Seconds allowed for each read of one attempt (``NOTIFY_TIMEOUT``); connecting gets at most 5 s.
DEFAULT_TIMEOUT = 10.0
ATTEMPTS = 3


class DeliveryError(Exception):
    """A notification could not be delivered; the message never contains the URL."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def describe(url: str) -> str:
    """``host:port`` of *url*: what logs may show (the path of a webhook URL is its secret)."""
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or "?"


def deliver(method: str, url: str, json: Any | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Send one request, retrying connection errors, timeouts and 5xx (3 attempts, backoff ≤ 4 s).

    *timeout* bounds each attempt's connect (at most 5 s) and each read.
    """
    import requests  # noqa: PLC0415 - see the module docstring
    from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential  # noqa: PLC0415

    def transient(exc: BaseException) -> bool:
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
        return isinstance(exc, DeliveryError) and exc.status >= 500

    @retry(
        retry=retry_if_exception(transient),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=4),
        reraise=True,
    )
    def attempt(session: requests.Session) -> None:
        reply = session.request(method, url, json=json, timeout=(min(5.0, timeout), timeout))
        if reply.status_code >= 400:
            raise DeliveryError(f"{describe(url)} answered HTTP {reply.status_code}", reply.status_code)

    with requests.Session() as session:
        try:
            attempt(session)
        except requests.RequestException as exc:
            raise DeliveryError(f"{describe(url)}: {type(exc).__name__}") from None

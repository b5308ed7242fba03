"""Masking secrets in text: URIs with passwords, known secret values, rclone config values."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host. The password runs to the *last* '@' of the
# URI (greedy), so a raw, un-encoded '/', '@', '#' or '?' in it (a malformed URI) is masked whole too.
_URI_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s'\"]*:)(?P<secret>[^\s'\"]*)(?P<at>@)")
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:password|pass|pwd|sslpassword|secret|token|key|access_key_id|secret_access_key)=)"
    r"(?P<secret>[^&#\s]*)",
    re.IGNORECASE,
)
_SECRET_QUERY_KEYS = frozenset(
    {"password", "pass", "pwd", "sslpassword", "secret", "token", "key", "access_key_id", "secret_access_key"}
)


def redact_uri(uri: str) -> str:
    """Return *uri* with its password and secret-looking query values replaced by ``***``.

    >>> redact_uri("postgresql://app:s3cret@db:5432/app?sslmode=require&password=x")
    'postgresql://app:***@db:5432/app?sslmode=require&password=***'
    """
    out = _URI_PASSWORD.sub(lambda m: m.group("prefix") + MASK + m.group("at"), uri)
    return _QUERY_SECRET.sub(lambda m: m.group("key") + MASK, out)


def uri_secrets(uri: str) -> list[str]:
    """The secret substrings of *uri* (password, secret query values), for registration with a redactor."""
    found: list[str] = []
    try:
        parts = urlsplit(uri)
        if parts.password:
            found.append(parts.password)
        for key, value in parse_qsl(parts.query, keep_blank_values=False):
            if key.lower() in _SECRET_QUERY_KEYS and value:
                found.append(value)
    except ValueError:
        pass
    m = _URI_PASSWORD.search(uri)
    if m and m.group("secret"):
        found.append(m.group("secret"))
    return found


class Redactor:
    """Replaces every registered secret, and every URI password, in a piece of text.

    Thread-safe; secrets shorter than 3 characters are masked too, but only as whole
    URI parts (masking every "a" in a log line would make logs unreadable and hide nothing).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Register secrets to mask from now on."""
        with self._lock:
            for s in secrets:
                if s and len(s) >= 3:
                    self._secrets.add(s)

    def __call__(self, text: str) -> str:
        out = redact_uri(text)
        with self._lock:
            # longest first, so a secret containing another is masked whole
            for s in sorted(self._secrets, key=len, reverse=True):
                if s in out:
                    out = out.replace(s, MASK)
        return out


#: Process-wide redactor used by the logging filter; settings register their secrets here.
GLOBAL_REDACTOR = Redactor()

"""Email over SMTP: ``smtp://``, ``smtps://`` (TLS) or ``smtp+starttls://`` URLs."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from dbstash.errors import ConfigError
from dbstash.notify.base import Notifier, NotifyOn, RunEvent, Stage, wanted
from dbstash.redact import redact_uri

if TYPE_CHECKING:
    from email.message import EmailMessage

SMTP_TIMEOUT = 20.0
SCHEMES = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}


class EmailNotifier(Notifier):
    """Sends a plain-text email through an SMTP server."""

    kind = "email"

    def __init__(
        self,
        smtp_url: str,
        to: list[str],
        sender: str | None = None,
        *,
        password: str | None = None,
        notify_on: NotifyOn = "failure",
        timeout: float = SMTP_TIMEOUT,
        variable: str = "NOTIFY_SMTP_URL",
    ) -> None:
        parts = urlsplit(smtp_url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ConfigError(
                variable,
                "smtp://host:25, smtps://user:pass@host:465 or smtp+starttls://user:pass@host:587",
                redact_uri(smtp_url),
            )
        if not to:
            raise ConfigError("NOTIFY_EMAIL_TO", "one or more email addresses separated by commas")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or SCHEMES[parts.scheme]
        self.user = unquote(parts.username) if parts.username else None
        self.password = password if password is not None else (unquote(parts.password) if parts.password else None)
        self.to = to
        self.sender = sender or f"dbstash@{socket.gethostname()}"
        self.notify_on = notify_on
        self.timeout = timeout

    def wants(self, stage: Stage) -> bool:
        return wanted(self.notify_on, stage)

    def message(self, event: RunEvent) -> EmailMessage:
        """The email (also used by tests)."""
        from email.message import EmailMessage  # noqa: PLC0415 - smtplib/ssl/email load only when mailing

        msg = EmailMessage()
        msg["Subject"] = event.summary()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg.set_content(event.text() + "\n")
        return msg

    def send(self, event: RunEvent) -> None:
        import smtplib  # noqa: PLC0415 - see message()
        import ssl  # noqa: PLC0415

        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.scheme == "smtps":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.scheme == "smtp+starttls":
                smtp.starttls(context=context)
            if self.user and self.password is not None:
                smtp.login(self.user, self.password)
            smtp.send_message(self.message(event))

"""Sending mail: ``KEYTURN_MAIL_URL`` names how.

- ``console:`` prints each message, its links included, to the server log: development only
  (``--dev`` uses it by default; outside development it is refused, since the log would then
  hold live reset links).
- ``smtp://[user:password@]host[:port]`` speaks SMTP with STARTTLS, required (port 587 by
  default); ``?starttls=off`` sends in clear, allowed only to a loopback host (a relay on the same
  machine, a test server).
- ``smtps://[user:password@]host[:port]`` uses implicit TLS (RFC 8314; port 465 by default).

Certificates are verified against the system's roots (``?cafile=PATH`` adds one). Every network
step is bounded by ``KEYTURN_MAIL_TIMEOUT``. A send raises ``MailError``, which says whether to
try again (a 4xx answer, a dropped or stalled connection, a refused login: the operator may fix
it) or not (a 5xx refusal of the message or its recipient).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from ..core.mail import Message
from ._fields import is_loopback_host

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "CONSOLE_MAIL",
    "ConsoleMailer",
    "MailError",
    "Mailer",
    "SmtpMailer",
    "SmtpTarget",
    "mailer_for",
    "parse_mail_url",
]

_log = logging.getLogger("keyturn.mail")


class MailError(Exception):
    """A message was not sent; ``retry`` says whether a later attempt may succeed."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class Mailer(Protocol):
    async def send(self, message: Message) -> None:
        """Send ``message``, or raise ``MailError``."""


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where and how to send, as ``KEYTURN_MAIL_URL`` says; ``repr`` hides the password."""

    host: str
    port: int
    tls: str  # "implicit", "starttls" or "off"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None


def parse_mail_url(url: str) -> SmtpTarget | None:
    """The SMTP target of a mail URL, or None for ``console:``.

    Raises:
        ValueError: with the reason, never the password.
    """
    if url.strip() == "console:":
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("use console:, smtp://host[:port] or smtps://host[:port]")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - {"starttls", "cafile"}
    if unknown:
        # A password with an unencoded "?" spills into the query: with a login, name no option.
        name = "" if "@" in url else f" {sorted(unknown)[0]!r}"
        raise ValueError(f"unknown option{name} (starttls, cafile)")
    if parts.scheme == "smtps":
        if "starttls" in query:
            raise ValueError("smtps:// is TLS from the start: starttls is for smtp://")
        tls = "implicit"
    elif query.get("starttls", "required") == "off":
        if not is_loopback_host(parts.hostname):
            raise ValueError("starttls=off sends mail in clear: only to a loopback host")
        tls = "off"
    elif query.get("starttls", "required") == "required":
        tls = "starttls"
    else:
        raise ValueError("starttls is required or off")
    try:
        port = parts.port or (465 if tls == "implicit" else 587)
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return SmtpTarget(parts.hostname, port, tls, username, password, query.get("cafile"))


def mailer_for(settings: Settings) -> Mailer | None:
    """The mailer the settings ask for (``Settings.mail``), or None: mail is off."""
    url = settings.mail
    if url is None:
        return None
    target = parse_mail_url(url)
    if target is None:
        return ConsoleMailer()
    return SmtpMailer(target, settings.mail_sender, timeout=settings.mail_timeout.total_seconds())


CONSOLE_MAIL = "mail to %s: %s\n\n%s"  # the one log line that holds a link, by design (development)


class ConsoleMailer:
    """Prints each message to the server log (development)."""

    async def send(self, message: Message) -> None:
        _log.info(CONSOLE_MAIL, message.to, message.subject, message.text)


class SmtpMailer:
    """Sends over SMTP, one connection per message, in a worker thread (``smtplib``)."""

    def __init__(self, target: SmtpTarget, sender: str, *, timeout: float = 10.0) -> None:
        self.target = target
        self.sender = sender
        self.timeout = timeout

    async def send(self, message: Message) -> None:
        await asyncio.to_thread(self._send, _email(message, self.sender))

    def _send(self, email: EmailMessage) -> None:
        target = self.target
        context = ssl.create_default_context(cafile=target.cafile)
        try:
            if target.tls == "implicit":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
            with smtp:
                if target.tls == "starttls":
                    smtp.starttls(context=context)
                if target.username is not None:
                    smtp.login(target.username, target.password or "")
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise MailError(
                f"the recipient was refused ({codes[0] if codes else '?'})", retry=_transient(codes)
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise MailError(f"the server answered {exc.smtp_code}", retry=_transient([exc.smtp_code])) from None
        except smtplib.SMTPNotSupportedError as exc:  # smtplib raises it for STARTTLS and for AUTH
            missing = "AUTH" if "AUTH" in str(exc) else "STARTTLS"
            raise MailError(f"the server offers no {missing}", retry=True) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, dropped, stalled, TLS failed
            raise MailError(f"{type(exc).__name__} talking to {target.host}:{target.port}", retry=True) from None


def _transient(codes: list[int]) -> bool:
    """4xx is temporary (RFC 5321 §4.2.1); so is a refused login (535): the operator may fix it."""
    return any(400 <= code < 500 or code in (530, 534, 535) for code in codes)


def _email(message: Message, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(datetime.now(UTC))
    email["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].rstrip(">") or None)
    email.set_content(message.text)
    email.add_alternative(message.html, subtype="html")
    return email

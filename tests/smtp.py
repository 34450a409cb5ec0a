"""A real SMTP server for the tests: aiosmtpd on loopback, in a thread of its own, keeping every
message it accepts. Its ``mode`` makes it misbehave the way mail servers do: refuse for now
(451), refuse for good (550), or stall (answer the message's data only after ``stall`` seconds).

It speaks plain SMTP, STARTTLS (required before any mail) or implicit TLS, with a self-signed
certificate made for it (``.cafile`` trusts it), and can require a login. ``mute_server`` is a
port that accepts connections and never says a word (a greeting that never comes).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ipaddress
import logging
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import free_port

__all__ = ["SmtpServer", "Tls", "link_token", "mute_server", "self_signed", "smtp_server"]

_LINK = re.compile(r"#([a-z-]+)=(kt_et_[A-Za-z0-9_-]{43})")
# aiosmtpd logs every line of every message at DEBUG, links included: what keyturn's own log must
# never hold (the suite's secrecy scan, tests/conftest.py). The test server's log says less.
logging.getLogger("mail.log").setLevel(logging.INFO)

Tls = Literal["off", "starttls", "implicit"]


class SmtpServer:
    """What the server received, and how it answers next (``mode``: accept, refuse, reject, stall)."""

    def __init__(
        self, port: int, *, tls: Tls = "off", cafile: Path | None = None, login: tuple[str, str] | None = None
    ) -> None:
        self.port = port
        self.tls = tls
        self.cafile = cafile
        self.login = login
        self.mode = "accept"
        self.stall = 30.0
        self.messages: list[EmailMessage] = []
        self.logins: list[str] = []  # the user names that logged in, in order
        self.attempts = 0
        self._arrived = threading.Condition()

    @property
    def url(self) -> str:
        """The ``KEYTURN_MAIL_URL`` of this server: plain SMTP (allowed to a loopback host), or
        STARTTLS or implicit TLS trusting its certificate, with its login if it asks for one."""
        user = "" if self.login is None else f"{quote(self.login[0], safe='')}:{quote(self.login[1], safe='')}@"
        if self.tls == "off":
            return f"smtp://{user}127.0.0.1:{self.port}?starttls=off"
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        return f"{scheme}://{user}127.0.0.1:{self.port}?cafile={self.cafile}"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:  # aiosmtpd's authenticator
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == tuple(
            part.encode() for part in self.login or ("", "")
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.login is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if self.mode == "refuse":
            return "451 4.3.0 Try again later"
        if self.mode == "reject":
            return "550 5.1.1 No such mailbox"
        if self.mode == "stall":
            await asyncio.sleep(self.stall)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 OK"

    def wait_for(self, to: str, *, count: int = 1, timeout: float = 10.0) -> EmailMessage:
        """The ``count``-th message to ``to`` (case-insensitive), waiting for it (bounded)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                mine = [m for m in self.messages if str(m["To"]).lower() == to.lower()]
                if len(mine) >= count:
                    return mine[count - 1]
                left = deadline - time.monotonic()
                assert left > 0, f"no message {count} to {to} within {timeout} s ({len(self.messages)} in all)"
                self._arrived.wait(left)


def link_token(message: EmailMessage, action: str) -> str:
    """The token of the ``#<action>=<token>`` link in ``message``'s plain text (and its HTML)."""
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    found = dict(_LINK.findall(text))
    assert action in found, f"no {action} link in: {text!r}"
    html = message.get_body(("html",))
    assert html is not None
    assert found[action] in html.get_content()
    token: str = found[action]
    return token


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (an IP address, and no name: reached as ``localhost``
    it does not match) and its key, as PEM files in ``directory``: ``(certificate, key)``. The
    certificate is its own CA (the ``cafile`` that trusts it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@contextmanager
def smtp_server(*, tls: Tls = "off", login: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    """Start an SMTP server on a free loopback port for the block.

    Args:
        tls: ``off`` (plain SMTP), ``starttls`` (required before any mail) or ``implicit`` (TLS
            from the first byte, RFC 8314), with a self-signed certificate made for the block.
        login: the one user and password it accepts (AUTH PLAIN or LOGIN); without it, messages
            are refused (530). Over plain SMTP the login is allowed in clear (loopback).
    """
    with tempfile.TemporaryDirectory(prefix="keyturn-smtp-") as directory:
        context = None
        cafile = None
        if tls != "off":
            cafile, keyfile = self_signed(Path(directory))
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cafile, keyfile)
        server = SmtpServer(free_port(), tls=tls, cafile=cafile, login=login)
        options: dict[str, Any] = {}
        if tls == "implicit":
            options["ssl_context"] = context
        elif tls == "starttls":
            options.update(tls_context=context, require_starttls=True)
        if login is not None:
            # Not auth_required (aiosmtpd warns about it without TLS): handle_DATA refuses instead.
            # auth_require_tls counts STARTTLS only; implicit TLS is TLS all the same.
            options.update(authenticator=server.authenticate, auth_require_tls=tls == "starttls")
        controller = Controller(server, hostname="127.0.0.1", port=server.port, **options)
        controller.start()
        try:
            yield server
        finally:
            controller.stop()


@contextmanager
def mute_server() -> Iterator[int]:
    """A loopback port whose connections are accepted (by the kernel) and never answered: an SMTP
    greeting, or a TLS handshake, that never comes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port: int = listener.getsockname()[1]
        yield port


def smtp_fixture(scope: Literal["function", "module"] = "function") -> Any:
    """A fixture named ``smtp``: a plain SMTP server (``smtp_server()``) for one test, or a module."""

    @pytest.fixture(scope=scope)
    def smtp() -> Iterator[SmtpServer]:
        with smtp_server() as server:
            yield server

    return smtp

"""Integration tests of keyturn.server.mailer against a real SMTP server on loopback (aiosmtpd,
tests/smtp.py): what KEYTURN_MAIL_URL may say (a table, refusals never showing the password), the
message as it arrives, which failures are worth retrying (451, a stall, a refused connection, an
untrusted certificate, a refused login) and which are not (550), STARTTLS and implicit TLS with a
certificate made for the test, and SMTP AUTH."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from keyturn.core.mail import Message
from keyturn.server.config import Settings
from keyturn.server.mailer import ConsoleMailer, MailError, SmtpMailer, SmtpTarget, mailer_for, parse_mail_url
from tests.servers import free_port
from tests.smtp import Tls, mute_server, smtp_server

pytestmark = pytest.mark.anyio

SECRET = "Q2v8rX1pLw9zT4mN7bK3cY6hJ0dF5gS2aE8uI1oPzR4tW"
PASSWORD = "hunter2-mail-password"
SENDER = "keyturn <no-reply@auth.example>"
TO = "alice@example.com"
LINK = "https://auth.example/#verify=kt_et_" + "Q" * 43
MESSAGE = Message(
    to=TO,
    subject="Verify your email address for keyturn",
    text=f"To confirm your address, open this link:\n\n{LINK}\n",
    html=f'<!doctype html><html><body><p><a href="{LINK}">{LINK}</a></p></body></html>',
)
TIMEOUT = 0.5  # seconds: each network step of a send


def mailer(url: str) -> SmtpMailer:
    target = parse_mail_url(url)
    assert target is not None
    return SmtpMailer(target, SENDER, timeout=TIMEOUT)


async def refusal(url: str) -> MailError:
    """The MailError sending MESSAGE to ``url`` raises."""
    with pytest.raises(MailError) as caught:
        await mailer(url).send(MESSAGE)
    return caught.value


# --- KEYTURN_MAIL_URL ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://mail.example", SmtpTarget("mail.example", 587, "starttls")),
        ("smtp://mail.example:2525", SmtpTarget("mail.example", 2525, "starttls")),
        ("smtp://mail.example?starttls=required", SmtpTarget("mail.example", 587, "starttls")),
        ("smtps://mail.example", SmtpTarget("mail.example", 465, "implicit")),
        ("smtps://mail.example:4650", SmtpTarget("mail.example", 4650, "implicit")),
        ("smtp://127.0.0.1:25?starttls=off", SmtpTarget("127.0.0.1", 25, "off")),
        ("smtp://127.8.9.10:25?starttls=off", SmtpTarget("127.8.9.10", 25, "off")),
        ("smtp://[::1]:2525?starttls=off", SmtpTarget("::1", 2525, "off")),
        ("smtp://LocalHost?starttls=off", SmtpTarget("localhost", 587, "off")),
        ("smtp://mail.example?cafile=/etc/ca.pem", SmtpTarget("mail.example", 587, "starttls", cafile="/etc/ca.pem")),
        (
            f"smtps://apikey:{PASSWORD}@smtp.example.com",
            SmtpTarget("smtp.example.com", 465, "implicit", "apikey", PASSWORD),
        ),
        (
            "smtp://me%40example.com:p%40ss%3Aw%2Frd@mail.example",
            SmtpTarget("mail.example", 587, "starttls", "me@example.com", "p@ss:w/rd"),
        ),
    ],
)  # fmt: skip
def test_mail_urls_name_the_host_port_tls_and_login(url: str, target: SmtpTarget) -> None:
    """smtp:// is STARTTLS on 587 unless told otherwise, smtps:// implicit TLS on 465; a
    percent-encoded login is decoded; ?cafile= is kept."""
    assert parse_mail_url(url) == target


@pytest.mark.parametrize("url", ["console:", "  console:  "])
def test_console_is_no_smtp_target(url: str) -> None:
    """console: (surrounding blanks ignored) means the development mailer: no SMTP target."""
    assert parse_mail_url(url) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("smtp://mail.example?starttls=off", "starttls=off sends mail in clear: only to a loopback host"),
        ("smtp://10.0.0.5?starttls=off", "starttls=off sends mail in clear: only to a loopback host"),
        ("smtp://localhost.example?starttls=off", "starttls=off sends mail in clear: only to a loopback host"),
        ("smtp://0.0.0.0?starttls=off", "starttls=off sends mail in clear: only to a loopback host"),
        ("smtp://mail.example?starttls=maybe", "starttls is required or off"),
        ("smtps://mail.example?starttls=off", "smtps:// is TLS from the start: starttls is for smtp://"),
        ("smtp://mail.example?tls=on", "unknown option 'tls' (starttls, cafile)"),
        ("smtp://mail.example?starttls=required&password=x", "unknown option 'password' (starttls, cafile)"),
        ("smtp://mailer:pw@mail.example?tls=on", "unknown option (starttls, cafile)"),
        ("smtp://mail.example:port", "the port is not a number from 1 to 65535"),
        ("smtp://mail.example:70000", "the port is not a number from 1 to 65535"),
        ("http://mail.example", "use console:, smtp://host[:port] or smtps://host[:port]"),
        ("mail.example:25", "use console:, smtp://host[:port] or smtps://host[:port]"),
        ("smtp://", "use console:, smtp://host[:port] or smtps://host[:port]"),
        ("console", "use console:, smtp://host[:port] or smtps://host[:port]"),
        ("", "use console:, smtp://host[:port] or smtps://host[:port]"),
    ],
)
def test_unusable_mail_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    """A URL that is not console:, smtp:// or smtps://, an unknown option (named only in a URL
    without a login), a bad port, and clear text off loopback are refused, saying why."""
    with pytest.raises(ValueError, match=re.escape(reason)) as caught:
        parse_mail_url(url)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    "url",
    [
        f"smtp://mailer:{PASSWORD}@mail.example?starttls=off",
        f"smtp://mailer:{PASSWORD}@mail.example?starttls=maybe",
        f"smtp://mailer:abc?{PASSWORD}@mail.example",
        f"smtp://mailer:abc?x={PASSWORD}@mail.example",
        f"smtp://mailer:abc?{PASSWORD}#@mail.example",
        f"smtp://mailer:abc/{PASSWORD}@mail.example",
        f"smtp://mailer:{PASSWORD}@mail.example?tls=on",
        f"smtp://mailer:{PASSWORD}@mail.example:port",
        f"smtp://mailer:{PASSWORD}@mail.example:99999",
        f"smtp://mailer:{PASSWORD}#@mail.example",
        f"smtp://mailer:{PASSWORD}@[::1",
        f"imap://mailer:{PASSWORD}@mail.example",
        f"mailer:{PASSWORD}@mail.example",
    ],
)
def test_the_password_never_appears_in_a_refusal(url: str) -> None:
    """Whatever is wrong with the URL, the refusal (which start-up prints) never shows the password,
    not even one whose unencoded "?", "#" or "/" spills it into the query, fragment or path."""
    with pytest.raises(ValueError, match=r".") as caught:  # any reason, so long as it hides the password
        parse_mail_url(url)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


def test_a_target_repr_hides_the_password() -> None:
    """repr(SmtpTarget) names the host and user but not the password."""
    target = parse_mail_url(f"smtps://mailer:{PASSWORD}@mail.example")
    assert "mailer" in repr(target)
    assert PASSWORD not in repr(target)


# --- which mailer the settings ask for ------------------------------------------------------------


@pytest.mark.usefixtures("no_env")
def test_mailer_for_follows_the_settings() -> None:
    """Development without a URL prints (console); production without one has no mailer; a URL
    gives an SMTP mailer with KEYTURN_MAIL_FROM (or the product at the issuer's host) and the timeout."""
    dev = Settings(secret=SECRET, env="development")
    assert isinstance(mailer_for(dev), ConsoleMailer)
    assert mailer_for(Settings(secret=SECRET, issuer="https://auth.example")) is None
    smtp = mailer_for(
        Settings(secret=SECRET, issuer="https://auth.example", mail_url="smtps://mail.example", mail_timeout="3s")
    )
    assert isinstance(smtp, SmtpMailer)
    assert (smtp.target, smtp.sender, smtp.timeout) == (
        SmtpTarget("mail.example", 465, "implicit"),
        "keyturn <no-reply@auth.example>",
        3.0,
    )
    named = Settings(
        secret=SECRET,
        issuer="https://auth.example",
        mail_url="smtps://mail.example",
        mail_from="Acme <id@acme.example>",
    )
    smtp = mailer_for(named)
    assert isinstance(smtp, SmtpMailer)
    assert smtp.sender == "Acme <id@acme.example>"  # fmt: skip


async def test_the_console_mailer_prints_the_message_with_its_link(caplog: pytest.LogCaptureFixture) -> None:
    """console: writes the recipient, the subject and the text (its link) to the keyturn.mail log."""
    with caplog.at_level(logging.INFO, logger="keyturn.mail"):
        await ConsoleMailer().send(MESSAGE)
    (record,) = [r for r in caplog.records if r.name == "keyturn.mail"]
    assert TO in record.getMessage()
    assert MESSAGE.subject in record.getMessage()
    assert LINK in record.getMessage()


# --- sending -------------------------------------------------------------------------------------


async def test_a_message_arrives_with_its_headers_and_both_parts() -> None:
    """The message arrives From the sender, To the recipient, with its Subject, a Date, a
    Message-ID at the sender's domain, a plain-text part and an HTML part."""
    with smtp_server() as server:
        await mailer(server.url).send(MESSAGE)
        arrived = server.wait_for(TO)
    assert arrived["From"] == SENDER
    assert arrived["To"] == TO
    assert arrived["Subject"] == MESSAGE.subject
    sent_at = arrived["Date"].datetime  # "+0000": an aware UTC time (RFC 5322 §3.3), not "-0000"
    assert sent_at.utcoffset() == timedelta(0)
    assert abs(sent_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert str(arrived["Message-ID"]).endswith("@auth.example>")
    assert arrived.get_content_type() == "multipart/alternative"
    plain, html = arrived.get_body(("plain",)), arrived.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().replace("\r\n", "\n") == MESSAGE.text  # SMTP lines end in CRLF
    assert html.get_content().strip() == MESSAGE.html


async def test_each_message_gets_its_own_message_id() -> None:
    """Two sends of the same message carry two different Message-IDs."""
    with smtp_server() as server:
        for _ in range(2):
            await mailer(server.url).send(MESSAGE)
        ids = {server.wait_for(TO, count=n)["Message-ID"] for n in (1, 2)}
    assert len(ids) == 2


async def test_451_is_worth_retrying() -> None:
    """A 4xx answer (451: try again later) raises MailError with retry=True, naming the code."""
    with smtp_server() as server:
        server.mode = "refuse"
        error = await refusal(server.url)
        assert server.attempts == 1
        assert server.messages == []
    assert (error.reason, error.retry) == ("the server answered 451", True)


async def test_550_is_not_retried() -> None:
    """A 5xx refusal of the message (550: no such mailbox) raises MailError with retry=False."""
    with smtp_server() as server:
        server.mode = "reject"
        error = await refusal(server.url)
    assert (error.reason, error.retry) == ("the server answered 550", False)


async def test_a_stall_after_the_data_is_retried_within_about_the_timeout() -> None:
    """A server that takes the message and never answers: retry=True, after about KEYTURN_MAIL_TIMEOUT."""
    with smtp_server() as server:
        server.mode = "stall"
        started = time.monotonic()
        error = await refusal(server.url)
        elapsed = time.monotonic() - started
    assert error.retry is True
    assert "talking to 127.0.0.1" in error.reason
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 2


async def test_a_greeting_that_never_comes_is_retried_within_about_the_timeout() -> None:
    """A port that accepts and never says a word (plain or TLS): retry=True after about the timeout."""
    with mute_server() as port:
        for url in (f"smtp://127.0.0.1:{port}?starttls=off", f"smtps://127.0.0.1:{port}"):
            started = time.monotonic()
            error = await refusal(url)
            elapsed = time.monotonic() - started
            assert error.retry is True, url
            assert f"talking to 127.0.0.1:{port}" in error.reason
            assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 2, url


async def test_an_unreachable_server_is_retried() -> None:
    """Nothing listening on the port: retry=True (a relay being restarted comes back)."""
    port = free_port()
    error = await refusal(f"smtp://127.0.0.1:{port}?starttls=off")
    assert (error.reason, error.retry) == (f"ConnectionRefusedError talking to 127.0.0.1:{port}", True)


# --- TLS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_a_message_arrives_over_tls_trusting_the_cafile(tls: Tls) -> None:
    """STARTTLS (smtp://) and implicit TLS (smtps://) deliver when ?cafile= trusts the server's certificate."""
    with smtp_server(tls=tls) as server:
        assert server.url.startswith("smtps://" if tls == "implicit" else "smtp://")
        await mailer(server.url).send(MESSAGE)
        assert server.wait_for(TO)["Subject"] == MESSAGE.subject


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_a_certificate_not_trusted_is_refused_and_retried(tls: Tls) -> None:
    """Without ?cafile= the self-signed certificate is not trusted: nothing is sent, retry=True
    (the operator can fix the trust; the message waits)."""
    with smtp_server(tls=tls) as server:
        url = server.url.partition("?")[0]
        error = await refusal(url)
        assert error.retry is True
        assert error.reason == f"SSLCertVerificationError talking to 127.0.0.1:{server.port}"
        assert server.messages == []


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_a_certificate_for_another_host_is_refused(tls: Tls) -> None:
    """The certificate, trusted, names 127.0.0.1 only: the same server reached as localhost is refused."""
    with smtp_server(tls=tls) as server:
        error = await refusal(server.url.replace("127.0.0.1", "localhost"))
        assert error.retry is True
        assert error.reason == f"SSLCertVerificationError talking to localhost:{server.port}"
        assert server.messages == []


async def test_starttls_required_is_never_skipped_by_a_server_that_offers_none() -> None:
    """smtp:// requires STARTTLS: a server that does not offer it gets nothing, in clear or otherwise."""
    with smtp_server() as server:
        error = await refusal(f"smtp://127.0.0.1:{server.port}")
        assert (error.reason, error.retry) == ("the server offers no STARTTLS", True)
        assert server.attempts == 0


async def test_the_test_server_really_requires_starttls() -> None:
    """The STARTTLS server refuses a client that skips it (530): the deliveries above did use TLS."""
    with smtp_server(tls="starttls") as server:
        error = await refusal(f"smtp://127.0.0.1:{server.port}?starttls=off")
        assert (error.reason, error.retry) == ("the server answered 530", True)
        assert server.messages == []


# --- SMTP AUTH -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["starttls", "implicit", "off"])
async def test_a_login_in_the_url_is_used(tls: Tls) -> None:
    """user:password@ in the URL logs in (after STARTTLS, inside implicit TLS, or in clear on loopback)."""
    with smtp_server(tls=tls, login=("mailer", PASSWORD)) as server:
        await mailer(server.url).send(MESSAGE)
        assert server.wait_for(TO)["To"] == TO
        assert server.logins == ["mailer"]


async def test_a_refused_login_is_retried_and_never_shows_the_password() -> None:
    """A wrong password (535) is worth retrying (the operator may fix it); the reason shows no password."""
    wrong = "not-the-" + PASSWORD
    with smtp_server(tls="starttls", login=("mailer", PASSWORD)) as server:
        error = await refusal(server.url.replace(PASSWORD, wrong))
        assert server.logins == []
        assert server.messages == []
    assert (error.reason, error.retry) == ("the server answered 535", True)
    assert wrong not in str(error)
    assert PASSWORD not in str(error)


async def test_a_server_that_wants_a_login_refuses_a_url_without_one() -> None:
    """No login in the URL to a server that requires one: 530, retry=True (the operator adds it)."""
    with smtp_server(tls="starttls", login=("mailer", PASSWORD)) as server:
        error = await refusal(server.url.replace(f"mailer:{PASSWORD}@", ""))
        assert server.messages == []
    assert (error.reason, error.retry) == ("the server answered 530", True)


async def test_a_login_to_a_server_that_offers_no_auth_says_so() -> None:
    """A URL with a login to a server that offers no AUTH: nothing sent, the reason names AUTH, retry=True."""
    with smtp_server(tls="implicit") as server:
        url = server.url.replace("smtps://", f"smtps://mailer:{PASSWORD}@")
        error = await refusal(url)
        assert server.attempts == 0
    assert (error.reason, error.retry) == ("the server offers no AUTH", True)

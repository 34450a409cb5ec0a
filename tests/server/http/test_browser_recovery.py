"""Integration tests in a real browser: headless Chromium (Debian's package) drives the recovery
flows of the web page served by a real keyturn process on loopback, which mails a real SMTP server
on loopback (tests/smtp.py): sign up with an address and verify it from the mailed link; forget the
password, reset it from the mailed link, and every device is signed out.

Screenshots go to build/screenshots/ (or $KEYTURN_ARTIFACTS).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyturn.core.errors import EmailNotVerified, InvalidCredentials
from tests.browser import chromium_fixture, require_chromium
from tests.server.http.test_browser import PASSWORD, open_app, shot, sign_in
from tests.servers import Server, keyturn_server
from tests.smtp import SmtpServer, link_token, smtp_fixture

pytestmark = pytest.mark.browser

NEW_PASSWORD = "a fresh passphrase from the link"
SLOW_MS = 10_000  # a step that talks to the server (password hashing included)
MAIL_S = 15.0  # for a message to go through the outbox to the SMTP server

require_chromium()

from playwright.sync_api import Browser, BrowserContext, Page, expect  # noqa: E402

browser = chromium_fixture()


smtp = smtp_fixture("module")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[Server]:
    """The README's dev server, mailing the test SMTP server; access tokens live 5 minutes."""
    cwd = tmp_path_factory.mktemp("keyturn")
    with keyturn_server(cwd, "--dev", access_token_ttl="300", web_page="true", mail_url=smtp.url) as running:
        yield running


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[Server]:
    """The same, where only accounts with a verified address may sign in."""
    cwd = tmp_path_factory.mktemp("keyturn")
    with keyturn_server(
        cwd, "--dev", access_token_ttl="300", web_page="true", mail_url=smtp.url, require_verified_email="true"
    ) as running:
        yield running


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    yield ctx
    ctx.close()


def open_link(context: BrowserContext, server: Server, action: str, token: str) -> Page:
    """Open a mailed link in a new tab, as a mail client would."""
    page = context.new_page()
    page.goto(f"{server.url}/#{action}={token}")
    return page


def choose_password(page: Page, password: str, confirm: str | None = None) -> None:
    """Type a new password twice (``confirm``: the second time, if different) on the reset page."""
    page.fill("#reset-password", password)
    page.fill("#reset-confirm", password if confirm is None else confirm)
    page.press("#reset-confirm", "Enter")


def claims_of(page: Page) -> dict[str, Any]:
    """The claims of the page's access token (signed by the server; read here, not verified)."""
    payload = str(page.evaluate("() => window.keyturn.accessToken")).split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def sign_up_with_email(page: Page, username: str, address: str) -> None:
    page.click("#show-signup")
    page.fill("#signup-username", username)
    page.fill("#signup-email", address)
    page.fill("#signup-password", PASSWORD)
    page.press("#signup-password", "Enter")
    expect(page.locator("#whoami-username")).to_have_text(username, timeout=SLOW_MS)


def test_sign_up_verify_forget_reset_and_every_device_is_signed_out(
    browser: Browser, context: BrowserContext, server: Server, smtp: SmtpServer
) -> None:
    """Sign up with an address: the page says a link went to it; the mailed link verifies it. Then
    "Forgot password?", the mailed link, a new password: every device is signed out (another
    browser too), the new password signs in and the old one no longer does."""
    page = open_app(context, server)
    sign_up_with_email(page, "recoverer", "Recoverer@Example.org")
    expect(page.locator("#notice")).to_have_text(
        "Account created. Welcome, recoverer! We sent a link to Recoverer@Example.org to verify it."
    )
    expect(page.locator("#whoami-email-status")).to_have_text("Not verified")
    assert claims_of(page)["email_verified"] is False
    shot(page, "10-signed-up-with-email")

    verify = link_token(smtp.wait_for("recoverer@example.org", timeout=MAIL_S), "verify-email")
    tab = open_link(context, server, "verify-email", verify)
    expect(tab.locator("#notice")).to_contain_text("is verified", timeout=SLOW_MS)
    assert "verify-email" not in tab.url
    expect(tab.locator("#whoami-email-status")).to_have_text("Verified", timeout=SLOW_MS)
    assert claims_of(tab)["email_verified"] is True  # the page refreshed once verified,
    page.wait_for_function(  # and the first tab adopts that token (the tabs share one session)
        "(t) => window.keyturn.accessToken === t", arg=tab.evaluate("() => window.keyturn.accessToken")
    )
    tab.close()
    expect(page.locator("#whoami-email-status")).to_have_text("Not verified")  # as it was last read
    page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")  # the user comes back to it
    expect(page.locator("#whoami-email-status")).to_have_text("Verified", timeout=SLOW_MS)

    phone = browser.new_context()
    try:
        other = open_app(phone, server)
        sign_in(other, "recoverer")
        page.click("#signout")
        expect(page.locator("#auth-view")).to_be_visible(timeout=SLOW_MS)
        page.click("#show-forgot")
        page.fill("#forgot-email", "recoverer@example.org")
        page.press("#forgot-email", "Enter")
        expect(page.locator("#auth-notice")).to_have_text(
            "If that address belongs to an account, a link to choose a new password is on its way.",
            timeout=SLOW_MS,
        )

        reset = link_token(smtp.wait_for("recoverer@example.org", count=2, timeout=MAIL_S), "reset-password")
        tab = context.new_page()
        referers: list[str | None] = []
        tab.on("request", lambda request: referers.append(request.headers.get("referer")))
        tab.goto(f"{server.url}/#reset-password={reset}")
        expect(tab.locator("#reset-form")).to_be_visible()
        assert "reset-password" not in tab.url
        assert reset not in tab.url
        assert len(referers) >= 4  # the page, link.js, app.css, app.js, ...
        assert not any(referers), referers
        expect(tab.locator("#reset-password")).to_be_focused()
        shot(tab, "11-choose-a-new-password")
        choose_password(tab, NEW_PASSWORD)
        expect(tab.locator("#auth-notice")).to_have_text(
            "Password changed; every device was signed out. Sign in with your new password.", timeout=SLOW_MS
        )
        expect(tab.locator("#signin-form")).to_be_visible()
        expect(tab.locator("#signin-username")).to_be_focused()

        # The other browser's session has ended: its next request finds out, and it shows so.
        other.click("#whoami-reload")
        expect(other.locator("#auth-view")).to_be_visible(timeout=SLOW_MS)

        tab.fill("#signin-username", "recoverer")
        tab.fill("#signin-password", PASSWORD)
        tab.press("#signin-password", "Enter")
        expect(tab.locator("#auth-error")).to_have_text(InvalidCredentials.description, timeout=SLOW_MS)
        tab.fill("#signin-password", NEW_PASSWORD)
        tab.press("#signin-password", "Enter")
        expect(tab.locator("#whoami-username")).to_have_text("recoverer", timeout=SLOW_MS)
    finally:
        phone.close()


def test_a_used_link_and_a_weak_password_are_said_where_the_user_is_looking(
    context: BrowserContext, server: Server, smtp: SmtpServer
) -> None:
    """On the reset page a weak password, two different passwords, and a link already used are each
    refused inside the form, in view, in the role="alert" region; a used link offers a new one."""
    page = open_app(context, server)
    sign_up_with_email(page, "twicer", "twicer@example.org")
    page.click("#signout")
    expect(page.locator("#auth-view")).to_be_visible(timeout=SLOW_MS)
    httpx.post(f"{server.url}/v1/auth/password/forgot", json={"email": "twicer@example.org"}).raise_for_status()
    token = link_token(smtp.wait_for("twicer@example.org", count=2, timeout=MAIL_S), "reset-password")
    first = open_link(context, server, "reset-password", token)
    second = open_link(context, server, "reset-password", token)
    error = first.locator("#auth-error")

    choose_password(first, "password")
    expect(error).to_contain_text("password", timeout=SLOW_MS)
    assert error.get_attribute("role") == "alert"
    expect(first.locator("#reset-password")).to_be_focused()
    expect(first.locator("#reset-password")).to_have_attribute("aria-invalid", "true")

    choose_password(first, NEW_PASSWORD, NEW_PASSWORD + "!")
    expect(error).to_have_text("The two passwords are not the same; type the new one twice.")
    expect(first.locator("#reset-confirm")).to_be_focused()

    first.fill("#reset-confirm", NEW_PASSWORD)
    first.press("#reset-confirm", "Enter")
    expect(first.locator("#auth-notice")).to_contain_text("Password changed", timeout=SLOW_MS)

    choose_password(second, NEW_PASSWORD)
    expect(second.locator("#auth-error")).to_have_text(
        "This link is invalid or has expired; ask for a new one.", timeout=SLOW_MS
    )
    expect(second.locator("#reset-ask-again")).to_be_focused()
    shot(second, "12-used-reset-link")
    second.click("#reset-ask-again")
    expect(second.locator("#forgot-form")).to_be_visible()
    expect(second.locator("#forgot-email")).to_be_focused()


def test_a_bad_verification_link_offers_a_new_one(context: BrowserContext, server: Server) -> None:
    """A verification link that is not (or no longer) valid: the page says so in its alert region
    and shows the form that asks for a new link, whose answer is the server's status text."""
    page = open_link(context, server, "verify-email", "kt_et_" + "A" * 43)
    expect(page.locator("#error")).to_have_text(
        "This link is invalid or has expired; ask for a new one.", timeout=SLOW_MS
    )
    assert "verify-email" not in page.url
    expect(page.locator("#resend-form")).to_be_visible()
    page.fill("#resend-email", "nobody@example.org")
    page.press("#resend-email", "Enter")
    expect(page.locator("#auth-notice")).to_have_text(
        "If that address belongs to an account that is not verified yet, a new link is on its way.",
        timeout=SLOW_MS,
    )


def test_where_addresses_must_be_verified_the_page_says_what_to_do(
    context: BrowserContext, strict: Server, smtp: SmtpServer
) -> None:
    """Where sign-in needs a verified address: the page marks the email field required and says
    why, and sign-up without one is refused at that field; with one, the page says where the link
    went and asks to sign in after opening it; signing in before that is refused with a way to get
    a new link; after it, signing in works."""
    page = open_app(context, strict)
    page.click("#show-signup")
    expect(page.locator("#signup-email")).to_have_attribute("required", "")
    expect(page.locator("#signup-email-hint")).to_contain_text("Required.")
    page.fill("#signup-username", "strictly")
    page.fill("#signup-password", PASSWORD)
    page.press("#signup-password", "Enter")
    expect(page.locator("#auth-error")).to_have_text("Please enter your email.")
    expect(page.locator("#signup-email")).to_be_focused()
    expect(page.locator("#signup-email")).to_have_attribute("aria-invalid", "true")
    page.fill("#signup-email", "strictly@example.org")
    page.press("#signup-email", "Enter")
    expect(page.locator("#auth-notice")).to_have_text(
        "Account created. We sent a link to strictly@example.org to verify it. Open it, then sign in here.",
        timeout=SLOW_MS,
    )
    expect(page.locator("#signin-username")).to_have_value("strictly")
    expect(page.locator("#signin-password")).to_be_focused()
    page.fill("#signin-password", PASSWORD)
    page.press("#signin-password", "Enter")
    expect(page.locator("#auth-error")).to_have_text(EmailNotVerified.description, timeout=SLOW_MS)
    page.click("#show-resend")
    page.fill("#resend-email", "strictly@example.org")
    page.press("#resend-email", "Enter")
    expect(page.locator("#auth-notice")).to_contain_text("a new link is on its way", timeout=SLOW_MS)
    token = link_token(smtp.wait_for("strictly@example.org", count=2, timeout=MAIL_S), "verify-email")
    page.goto(f"{strict.url}/#verify-email={token}")  # the same tab: only the fragment changes
    expect(page.locator("#notice")).to_have_text("Your email address strictly@example.org is verified.")
    assert "verify-email" not in page.url
    sign_in(page, "strictly")


def test_the_page_sends_no_referrer(server: Server) -> None:
    """/ answers with Referrer-Policy: no-referrer, so no link's URL ever leaves in a Referer."""
    response = httpx.get(f"{server.url}/")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<script src="/static/link.js"></script>' in response.text
    assert response.text.index("/static/link.js") < response.text.index("/static/app.css")

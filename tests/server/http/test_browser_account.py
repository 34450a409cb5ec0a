"""Integration tests in a real browser: headless Chromium (Debian's package) on the signed-in page
of a real keyturn process on loopback, at a laptop's 1280x800: errors shown where the user is
looking, "sign out everywhere" that asks first, devices told apart and renamed, a "who am I" card
without raw ids, and a password-change message that says only what happened.

Screenshots go to build/screenshots/ (or $KEYTURN_ARTIFACTS).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.browser import chromium_fixture, require_chromium
from tests.server.http.test_browser import PASSWORD, open_app, shot, sign_up, two_devices
from tests.servers import Server, keyturn_fixture

pytestmark = pytest.mark.browser

SLOW_MS = 10_000  # a step that talks to the server (password hashing included)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)

require_chromium()

from playwright.sync_api import Browser, BrowserContext, Locator, Page, ViewportSize, expect  # noqa: E402

LAPTOP: ViewportSize = {"width": 1280, "height": 800}

browser = chromium_fixture()
# Access tokens live 5 minutes: no refresh happens during a test.
server = keyturn_fixture("--dev", access_token_ttl="300", web_page="true")


@pytest.fixture
def laptop(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=LAPTOP)
    yield ctx
    ctx.close()


def in_viewport(page: Page, locator: Locator) -> bool:
    box = locator.bounding_box()
    assert box is not None, "not rendered"
    size = page.viewport_size
    assert size is not None
    return box["height"] > 0 and box["y"] >= 0 and box["y"] + box["height"] <= size["height"]


def me_status(page: Page) -> int:
    status: int = page.evaluate("() => window.keyturn.fetch('/v1/auth/me').then(r => r.status)")
    return status


def test_a_wrong_current_password_is_said_next_to_the_form_in_view_and_announced(
    laptop: BrowserContext, server: Server
) -> None:
    """At 1280x800, scrolled down to "Change password": the refusal appears inside that card, within
    the viewport, in a role="alert" region the current-password field (focused, invalid) points to."""
    page = open_app(laptop, server)
    sign_up(page, "wrongcurrent")
    page.fill("#current-password", "not my password at all")
    page.fill("#new-password", "a brand new passphrase")
    page.press("#new-password", "Enter")
    error = page.locator("#password-error")
    expect(error).to_have_text("The current password is incorrect.", timeout=SLOW_MS)
    assert page.evaluate("() => window.scrollY") > 0  # where the page-wide banner would be out of view
    assert in_viewport(page, error)
    assert error.get_attribute("role") == "alert"
    expect(page.locator(".card", has=page.locator("#password-form")).locator("#password-error")).to_have_count(1)
    current = page.locator("#current-password")
    expect(current).to_be_focused()
    expect(current).to_have_attribute("aria-invalid", "true")
    expect(current).to_have_attribute("aria-describedby", "password-error")
    expect(page.locator("#error")).to_be_empty()
    shot(page, "7-wrong-current-password")
    page.fill("#current-password", PASSWORD)
    page.fill("#new-password", "a brand new passphrase")
    page.press("#new-password", "Enter")
    expect(page.locator("#password-notice")).to_have_text("Password changed.", timeout=SLOW_MS)
    expect(error).to_be_empty()
    expect(current).not_to_have_attribute("aria-invalid", "true")


def test_sign_out_everywhere_asks_first(laptop: BrowserContext, server: Server) -> None:
    """The button opens a modal dialog focused on Cancel: Cancel or Escape keep the session; the
    dialog's own "Sign out everywhere" ends it."""
    page = open_app(laptop, server)
    sign_up(page, "askfirst")
    dialog = page.get_by_role("dialog", name="Sign out everywhere?")
    for dismiss in (lambda: page.click("#signout-all-cancel"), lambda: page.keyboard.press("Escape")):
        page.click("#signout-all")
        expect(dialog).to_be_visible()
        expect(page.locator("#signout-all-cancel")).to_be_focused()
        dismiss()
        expect(dialog).to_be_hidden()
        expect(page.locator("#signout-all")).to_be_focused()
        assert me_status(page) == 200
        expect(page.locator("#app-view")).to_be_visible()
    page.click("#signout-all")
    shot(page, "8-sign-out-everywhere-dialog")
    page.click("#signout-all-confirm")
    expect(page.locator("#auth-view")).to_be_visible(timeout=SLOW_MS)
    expect(page.locator("#notice")).to_have_text("You have been signed out on every device.")
    assert me_status(page) == 401


def test_two_alike_devices_are_told_apart_and_one_is_renamed(browser: Browser, server: Server) -> None:
    """Two sign-ins from the same browser and address are numbered in the order first seen, each
    with its first-seen time; renaming one shows the new name on both devices, and the password
    change then says the other device was signed out."""
    first, second = browser.new_context(viewport=LAPTOP), browser.new_context(viewport=LAPTOP)
    try:
        page, other = two_devices(first, second, server, "lookalike")
        page.click("#devices-reload")
        names = page.locator("#devices .device-name")
        expect(names).to_have_text(["Headless Chrome on Linux #1", "Headless Chrome on Linux #2"])
        expect(page.locator("#devices .device-meta")).to_contain_text(["First seen", "First seen"])
        expect(page.locator("#whoami-device")).to_have_text("Headless Chrome on Linux #1")

        page.get_by_role("button", name="Rename Headless Chrome on Linux #2").click()
        field = page.get_by_label("New name for Headless Chrome on Linux #2")
        expect(field).to_be_focused()
        field.press("Escape")
        expect(names).to_have_text(["Headless Chrome on Linux #1", "Headless Chrome on Linux #2"])
        page.get_by_role("button", name="Rename Headless Chrome on Linux #2").click()
        field.fill("Work laptop")
        field.press("Enter")
        expect(names).to_have_text(["Headless Chrome on Linux", "Work laptop"], timeout=SLOW_MS)
        expect(page.locator("#devices-notice")).to_have_text("Renamed to “Work laptop”.")
        expect(page.get_by_role("button", name="Rename Work laptop")).to_be_focused()
        shot(page, "9-devices-renamed")
        other.click("#devices-reload")
        expect(other.locator("#devices .device-name").first).to_have_text("Work laptop")
        expect(other.locator("#whoami-device")).to_have_text("Work laptop")

        page.fill("#current-password", PASSWORD)
        page.fill("#new-password", "another new passphrase")
        page.press("#new-password", "Enter")
        notice = page.locator("#password-notice")
        expect(notice).to_have_text("Password changed; other devices were signed out.", timeout=SLOW_MS)
        expect(page.locator("#devices .device")).to_have_count(1)
    finally:
        first.close()
        second.close()


def test_who_am_i_shows_what_a_person_understands(laptop: BrowserContext, server: Server) -> None:
    """The card names the user, when this session started and this device, and shows no raw user
    or session id."""
    page = open_app(laptop, server)
    sign_up(page, "plainwords")
    card = page.locator("section[aria-labelledby=whoami-title]")
    expect(page.locator("#whoami-since")).to_contain_text("just now")
    expect(page.locator("#whoami-device")).to_have_text("Headless Chrome on Linux", timeout=SLOW_MS)
    text = card.inner_text()
    assert "plainwords" in text
    session_id = page.evaluate("() => window.keyturn.sessionId")
    assert session_id not in text
    assert not UUID.search(text), text


AGENTS = {
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36": (
        "Chrome on Linux", "desktop"),
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1": ("Safari on iOS", "phone"),
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0": (
        "Firefox on Windows", "desktop"),
    "curl/8.5.0": ("curl 8.5.0", "terminal"),
    "": ("Unknown device", "terminal"),
    "x" * 60: ("x" * 39 + "…", "terminal"),
}  # fmt: skip


def test_devices_and_times_are_named_as_a_person_reads_them(laptop: BrowserContext, server: Server) -> None:
    """format.js on its own, in the browser: user agents become "Browser on System" (or the
    program), alike devices are numbered in the order first seen while the list keeps the server's
    order, a device's own name wins, and times read as "in 5 min" and "3 min ago"."""
    page = laptop.new_page()
    page.goto(server.url + "/")
    described = page.evaluate(
        "async (agents) => { const f = await import('/static/format.js');"
        " return agents.map((ua) => { const a = f.describeAgent(ua); return [a.label, a.kind]; }); }",
        list(AGENTS),
    )
    assert [tuple(d) for d in described] == list(AGENTS.values())
    chrome = next(iter(AGENTS))
    sessions = [
        {"user_agent": chrome, "device_name": None, "created_at": "2026-12-05T10:00:00Z"},
        {"user_agent": chrome, "device_name": None, "created_at": "2026-12-05T09:00:00Z"},
        {"user_agent": chrome, "device_name": "Work laptop", "created_at": "2026-12-05T08:00:00Z"},
        {"user_agent": "curl/8.5.0", "device_name": None, "created_at": "2026-12-05T07:00:00Z"},
    ]
    labels = page.evaluate("async (s) => (await import('/static/format.js')).named(s).map((d) => d.label)", sessions)
    assert labels == ["Chrome on Linux #2", "Chrome on Linux #1", "Work laptop", "curl 8.5.0"]
    times = page.evaluate(
        "async () => { const f = await import('/static/format.js'); const now = Date.now();"
        " return [f.until(300_000), f.until(0), f.ago(new Date(now - 180_000)), f.ago(new Date(now - 2_000)),"
        " f.ago(new Date(now - 86_400_000)), f.ago(new Date(now - 60_000), 'exact')]; }"
    )
    assert times == ["in 5 min", "now", "3 min ago", "just now", "yesterday", "1 min ago (exact)"]

"""Integration tests in a real browser: headless Chromium (Debian's package) drives the web page
served by a real keyturn process on loopback, with a 2-second access-token lifetime.

Screenshots of the main screens go to build/screenshots/ (or $KEYTURN_ARTIFACTS).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import chromium_fixture, require_chromium
from tests.servers import Server, free_port, keyturn_fixture

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = Path(os.environ.get("KEYTURN_ARTIFACTS", ROOT / "build" / "screenshots"))
PASSWORD = "correct horse battery staple"

require_chromium()

from playwright.sync_api import Browser, BrowserContext, Page, Response, expect  # noqa: E402

browser = chromium_fixture()
# The README's dev server, with a 2 s access-token lifetime and no clock leeway.
server = keyturn_fixture("--dev", access_token_ttl="2", leeway="0", web_page="true")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1180, "height": 860})
    yield ctx
    ctx.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_app(context: BrowserContext, server: Server) -> Page:
    page = context.new_page()
    page.goto(server.url + "/")
    return page


def sign_up(page: Page, username: str) -> None:
    page.click("#show-signup")
    page.fill("#signup-username", username)
    page.fill("#signup-password", PASSWORD)
    page.press("#signup-password", "Enter")
    expect(page.locator("#app-view")).to_be_visible(timeout=10_000)
    expect(page.locator("#whoami-username")).to_have_text(username, timeout=10_000)


def sign_in(page: Page, username: str) -> None:
    page.fill("#signin-username", username)
    page.fill("#signin-password", PASSWORD)
    page.press("#signin-password", "Enter")
    expect(page.locator("#app-view")).to_be_visible(timeout=10_000)


def two_devices(first: BrowserContext, second: BrowserContext, server: Server, username: str) -> tuple[Page, Page]:
    """A new account signed up on ``first`` and signed in on ``second``: each one's page."""
    page = open_app(first, server)
    sign_up(page, username)
    other = open_app(second, server)
    sign_in(other, username)
    return page, other


def me_status(page: Page) -> int:
    status: int = page.evaluate("() => window.keyturn.fetch('/v1/auth/me').then(r => r.status)")
    return status


def reuse_revocations(server: Server) -> int:
    with sqlite3.connect(server.cwd / "keyturn.db") as db:
        (count,) = db.execute("SELECT count(*) FROM audit_events WHERE event = 'reuse_detected'").fetchone()
    return int(count)


def test_sign_up_sign_in_and_reload_stays_signed_in(context: BrowserContext, server: Server) -> None:
    """Sign up, sign out, sign in, reload: still signed in (the cookie restores the session)."""
    page = open_app(context, server)
    expect(page.locator("#auth-view")).to_be_visible()
    shot(page, "1-sign-in")
    sign_up(page, "reloader")
    page.click("#signout")
    expect(page.locator("#auth-view")).to_be_visible(timeout=10_000)
    sign_in(page, "reloader")
    page.reload()
    expect(page.locator("#app-view")).to_be_visible(timeout=10_000)
    expect(page.locator("#whoami-username")).to_have_text("reloader")
    shot(page, "2-signed-in")


def test_page_keeps_working_across_access_token_expiries(context: BrowserContext, server: Server) -> None:
    """With a 2 s access token, 7 s of use spans several expiries without any failed call or error."""
    page = open_app(context, server)
    sign_up(page, "longlived")
    statuses: list[tuple[str, int]] = []
    page.on("response", lambda r: statuses.append((r.url, r.status)) if "/v1/auth/" in r.url else None)
    for _ in range(7):
        page.wait_for_timeout(1000)
        page.click("#whoami-reload")
    page.click("#devices-reload")
    expect(page.locator("#devices .device")).to_have_count(1)
    expect(page.locator(".message-error:not(:empty)")).to_have_count(0)  # no error anywhere on the page
    refreshes = [s for url, s in statuses if url.endswith("/v1/auth/refresh")]
    assert len(refreshes) >= 3
    assert set(refreshes) == {200}
    # A call that races an expiry may get 401 once; the page then refreshes and retries it.
    failed = [(url, s) for url, s in statuses if s >= 400]
    assert all(s == 401 for _, s in failed), statuses
    assert len(failed) <= 2, statuses
    shot(page, "3-devices")


def test_five_tabs_refreshing_at_once_all_stay_signed_in(context: BrowserContext, server: Server) -> None:
    """Five tabs of one browser refresh at the same moment: all keep working, no reuse is detected."""
    first = open_app(context, server)
    sign_up(first, "fivetabs")
    tabs = [first] + [open_app(context, server) for _ in range(4)]
    for tab in tabs:
        expect(tab.locator("#app-view")).to_be_visible(timeout=10_000)
    before = reuse_revocations(server)
    for tab in tabs:
        tab.evaluate("() => { window.__refreshed = window.keyturn.refresh().then(() => 'ok', e => String(e)); }")
    assert [tab.evaluate("() => window.__refreshed") for tab in tabs] == ["ok"] * 5
    first.wait_for_timeout(2500)  # past one more access-token expiry
    assert [me_status(tab) for tab in tabs] == [200] * 5
    assert reuse_revocations(server) == before


def test_sign_out_everywhere_signs_out_other_tabs_and_devices(browser: Browser, server: Server) -> None:
    """Sign out everywhere in one tab: another tab switches at once, another device on its next refresh."""
    laptop = browser.new_context()
    phone = browser.new_context()
    try:
        tab_a = open_app(laptop, server)
        sign_up(tab_a, "everywhere")
        tab_b = open_app(laptop, server)
        expect(tab_b.locator("#app-view")).to_be_visible(timeout=10_000)
        other = open_app(phone, server)
        sign_in(other, "everywhere")
        tab_a.bring_to_front()  # a click in a background tab waits for its throttled frames
        tab_a.click("#signout-all")
        tab_a.click("#signout-all-confirm")
        expect(tab_a.locator("#auth-view")).to_be_visible(timeout=10_000)
        expect(tab_b.locator("#auth-view")).to_be_visible(timeout=10_000)
        expect(other.locator("#auth-view")).to_be_visible(timeout=10_000)
        shot(other, "4-signed-out-elsewhere")
    finally:
        laptop.close()
        phone.close()


class _Attacker(BaseHTTPRequestHandler):
    """A page on another origin that tries to use the victim's cookie."""

    victim = ""

    def do_GET(self) -> None:
        target = self.victim
        page = f"""<!doctype html><title>attacker</title><body>
<form id="f" method="POST" action="{target}/v1/auth/logout" enctype="text/plain">
<input name='{{"a":"' value='"}}'></form>
<script>
window.results = [];
async function attack() {{
  for (const path of ["/v1/auth/refresh", "/v1/auth/logout", "/v1/auth/logout-all"]) {{
    for (const init of [
      {{method: "POST", credentials: "include", mode: "no-cors",
        headers: {{"content-type": "text/plain"}}, body: "{{}}"}},
      {{method: "POST", credentials: "include",
        headers: {{"content-type": "application/json"}}, body: "{{}}"}},
    ]) {{
      try {{ const r = await fetch("{target}" + path, init); window.results.push(r.type + ":" + r.status); }}
      catch (e) {{ window.results.push("blocked"); }}
    }}
  }}
  return window.results;
}}
</script></body>"""
        body = page.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def attacker(server: Server) -> Iterator[str]:
    port = free_port()
    handler = type("Handler", (_Attacker,), {"victim": server.url})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_the_page_opened_at_localhost_signs_in_too(context: BrowserContext, server: Server) -> None:
    """`keyturn --dev serve` issues for 127.0.0.1; the same page opened at localhost signs up and in."""
    page = context.new_page()
    page.goto(f"http://localhost:{server.port}/")
    sign_up(page, "localhost-user")


def test_another_origin_cannot_refresh_or_log_out(context: BrowserContext, server: Server, attacker: str) -> None:
    """A page on another port (same site: SameSite sends the cookie) gets nowhere: Origin and CSRF checks."""
    victim = open_app(context, server)
    sign_up(victim, "victim")
    victim.close()  # its own silent refreshes would mix with the attack in the log
    log_before = server.log.read_text()
    evil = context.new_page()
    evil.goto(attacker)
    results = evil.evaluate("() => attack()")
    assert all(r in ("opaque:0", "blocked") for r in results), results
    with evil.expect_navigation():
        evil.evaluate("() => document.getElementById('f').submit()")
    new_log = server.log.read_text()[len(log_before) :]
    attempts = [line for line in new_log.splitlines() if "POST /v1/auth/" in line]
    assert attempts, "the attacks never reached the server"
    assert all(" 403" in line for line in attempts), attempts
    again = open_app(context, server)
    expect(again.locator("#app-view")).to_be_visible(timeout=10_000)
    assert me_status(again) == 200


def test_refresh_token_is_never_readable_by_javascript(context: BrowserContext, server: Server) -> None:
    """document.cookie has only the CSRF token; storage holds no token; responses carry none in the body."""
    page = open_app(context, server)
    responses: list[Response] = []
    page.on("response", lambda r: responses.append(r) if r.url.endswith(("/login", "/refresh")) else None)
    sign_up(page, "nojs")
    page.wait_for_timeout(2500)
    bodies = [r.text() for r in responses]
    cookie = page.evaluate("() => document.cookie")
    assert "kt_rt_" not in cookie
    assert "__Host-keyturn-csrf" in cookie
    storage = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    assert "kt_rt_" not in storage
    assert "eyJ" not in storage
    assert bodies
    assert not any("kt_rt_" in body for body in bodies)
    browser_cookies = {c["name"]: c for c in context.cookies()}
    refresh = browser_cookies["__Secure-keyturn-refresh"]
    assert refresh["httpOnly"]
    assert refresh["secure"]
    assert refresh["sameSite"] == "Strict"
    assert refresh["path"] == "/v1/auth"


def test_narrow_screen_and_keyboard_sign_in(browser: Browser, server: Server) -> None:
    """On a phone-sized screen the form is usable with the keyboard alone."""
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = open_app(ctx, server)
        page.click("#show-signup")
        page.fill("#signup-username", "keyboard")
        page.keyboard.press("Tab")  # the email field: optional, left empty
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        expect(page.locator("#app-view")).to_be_visible(timeout=10_000)
        shot(page, "5-narrow")
    finally:
        ctx.close()


def test_readme_spa_snippet_works_in_the_browser(context: BrowserContext, server: Server) -> None:
    """The README's fetch snippet, run in a page of keyturn's origin: login, API call, expiry, refresh."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- spa -->\n```js\n(.*?)```", readme, re.S)
    assert match, "README has no SPA snippet"
    page = open_app(context, server)
    result = page.evaluate(
        f"""async () => {{
        {match.group(1)}
        await fetch("/v1/auth/register", {{method: "POST", headers: {{"Content-Type": "application/json"}},
          body: JSON.stringify({{username: "snippet", password: "{PASSWORD}"}})}});
        await login("snippet", "{PASSWORD}");
        const me = await (await api("/v1/auth/me")).json();
        await new Promise((done) => setTimeout(done, 2500));
        const afterExpiry = (await api("/v1/auth/me")).status;
        return [me.username, afterExpiry, await refresh(), document.cookie.includes("kt_rt_")];
    }}"""
    )
    assert result == ["snippet", 200, True, False]


def test_sign_out_one_device_and_change_password(browser: Browser, server: Server) -> None:
    """From the devices list: sign out the other device; then change the password and sign in with it."""
    laptop = browser.new_context()
    phone = browser.new_context(user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1")
    try:
        page, other = two_devices(laptop, phone, server, "twodevices")
        page.click("#devices-reload")
        expect(page.locator("#devices .device")).to_have_count(2)
        expect(page.locator("#devices .device-current")).to_have_count(1)
        expect(page.locator("#devices .device-current")).to_have_text("This device")
        shot(page, "6-two-devices")
        page.locator("#devices .device-signout").click()
        expect(page.locator("#devices .device")).to_have_count(1, timeout=10_000)
        expect(other.locator("#auth-view")).to_be_visible(timeout=10_000)
        page.fill("#current-password", PASSWORD)
        page.fill("#new-password", "a brand new passphrase")
        page.press("#new-password", "Enter")
        # The other device was already signed out: nothing else to sign out, nothing else said.
        expect(page.locator("#password-notice")).to_have_text("Password changed.", timeout=10_000)
        other.fill("#signin-username", "twodevices")
        other.fill("#signin-password", "a brand new passphrase")
        other.press("#signin-password", "Enter")
        expect(other.locator("#app-view")).to_be_visible(timeout=10_000)
    finally:
        laptop.close()
        phone.close()

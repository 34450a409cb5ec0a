"""Integration tests in a real browser: headless Chromium (Debian's package) with several tabs of
the web page served by a real keyturn process on loopback; signing out in one tab signs out the
others through keyturn-session.js's BroadcastChannel.

The access token lives 5 minutes here, so no tab refreshes during a test: a tab that shows the
signed-out view within 2 s learnt it from the other tab, not from a refresh that failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import chromium_fixture, require_chromium
from tests.helpers import assert_refused
from tests.servers import Server, keyturn_fixture

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
AT_ONCE_MS = 2_000  # how soon the other tab must show the signed-out view
SLOW_MS = 10_000  # a step that talks to the server (password hashing included)

require_chromium()

from playwright.sync_api import Browser, BrowserContext, Page, expect  # noqa: E402

browser = chromium_fixture()
server = keyturn_fixture("--dev", access_token_ttl="300", web_page="true")

# Records, in a tab, every message on keyturn-session.js's channel (a listener of its own).
LISTEN = """() => {
  window.__heard = [];
  new BroadcastChannel("keyturn").onmessage = (event) => window.__heard.push(event.data);
}"""


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    yield ctx
    ctx.close()


def open_app(context: BrowserContext, server: Server) -> Page:
    page = context.new_page()
    page.goto(server.url + "/")
    return page


def two_tabs(context: BrowserContext, server: Server, username: str) -> tuple[Page, Page]:
    """Sign up in one tab, open a second: both signed in to one session, done loading."""
    first = open_app(context, server)
    first.click("#show-signup")
    first.fill("#signup-username", username)
    first.fill("#signup-password", PASSWORD)
    first.press("#signup-password", "Enter")
    second = open_app(context, server)
    for tab in (first, second):
        expect(tab.locator("#whoami-username")).to_have_text(username, timeout=SLOW_MS)
        expect(tab.locator("#devices .device")).to_have_count(1, timeout=SLOW_MS)
    return first, second


def me(server: Server, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


def stored(page: Page) -> Any:
    return page.evaluate("() => [Object.entries(localStorage), Object.entries(sessionStorage)]")


@pytest.mark.parametrize("button", ["#signout-all", "#signout"])
def test_signing_out_in_one_tab_signs_out_the_other_at_once(
    context: BrowserContext, server: Server, button: str
) -> None:
    """Sign out (everywhere) in tab 1: tab 2 shows the signed-out view within 2 s with no request of
    its own, the message carries no token, and the token tab 2 held is refused as session_ended."""
    first, second = two_tabs(context, server, f"tabs{button.replace('#', '-')}")
    token = second.evaluate("() => window.keyturn.accessToken")
    session_id = second.evaluate("() => window.keyturn.sessionId")
    assert me(server, token).status_code == 200
    second.evaluate(LISTEN)
    requests: list[str] = []
    second.on("request", lambda request: requests.append(request.url))

    first.bring_to_front()  # a click in a background tab waits for its throttled frames
    first.click(button)
    if button == "#signout-all":
        first.click("#signout-all-confirm")  # it asks first

    expect(second.locator("#auth-view")).to_be_visible(timeout=AT_ONCE_MS)
    expect(second.locator("#app-view")).to_be_hidden()
    expect(second.locator("#notice")).to_have_text("You were signed out in another tab.")
    expect(second.locator("#whoami-username")).to_have_text("")
    assert second.evaluate("() => window.keyturn.accessToken") is None
    assert requests == []
    assert second.evaluate("() => window.__heard") == [{"type": "logout", "session_id": session_id}]
    assert stored(first) == stored(second) == [[], []]
    expect(first.locator("#auth-view")).to_be_visible(timeout=SLOW_MS)
    assert_refused(me(server, token), 401, "invalid_token", "The session of this access token has ended.")


def test_a_token_of_the_ended_session_arriving_late_is_not_adopted(context: BrowserContext, server: Server) -> None:
    """A tab that saw the session end ignores a token of it broadcast late (a refresh the server
    answered just before the sign-out), and still adopts the next session's token."""
    first, second = two_tabs(context, server, "latecomer")
    token = second.evaluate("() => window.keyturn.accessToken")
    first.bring_to_front()  # a click in a background tab waits for its throttled frames
    first.click("#signout-all")
    first.click("#signout-all-confirm")
    expect(second.locator("#auth-view")).to_be_visible(timeout=AT_ONCE_MS)
    second.evaluate(LISTEN)
    requests: list[str] = []
    second.on("request", lambda request: requests.append(request.url))

    # What the other tab's refresh would post: a valid token of the now-ended session.
    first.evaluate(
        """(token) => new BroadcastChannel("keyturn").postMessage(
             {type: "token", access_token: token, expires_at: Date.now() + 60_000})""",
        token,
    )
    second.wait_for_function("() => window.__heard.length === 1", timeout=AT_ONCE_MS)
    assert second.evaluate("() => window.keyturn.accessToken") is None
    expect(second.locator("#auth-view")).to_be_visible()
    assert requests == []

    first.fill("#signin-username", "latecomer")
    first.fill("#signin-password", PASSWORD)
    first.press("#signin-password", "Enter")
    expect(second.locator("#app-view")).to_be_visible(timeout=SLOW_MS)
    expect(second.locator("#whoami-username")).to_have_text("latecomer", timeout=SLOW_MS)

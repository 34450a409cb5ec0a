"""Unit tests of ``refresh_cookie``, the one lookup of the refresh cookie that the routes and the error
handler use, and of ``CookieFilter``, which leaves nothing else for anyone to parse (no I/O: requests
are built from hand-made scopes)."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from keyturn.server.http.cookies import REFRESH_COOKIE, CookieFilter, refresh_cookie
from tests.hostile import BENIGN_COOKIE, COOKIE_HEADER, WORST_COOKIES, ids
from tests.timing import cost_ratio


def request(*cookie_headers: str) -> Request:
    return Request({"type": "http", "headers": [(b"cookie", h.encode("latin-1")) for h in cookie_headers]})


@pytest.mark.parametrize(
    ("headers", "found"),
    [
        ((), None),
        (("a=1; b=2",), None),
        ((f"{REFRESH_COOKIE}=kt_rt_abc",), "kt_rt_abc"),
        ((f"a=1;{REFRESH_COOKIE}=kt_rt_abc;b=2",), "kt_rt_abc"),
        ((f"a=1;  {REFRESH_COOKIE} = kt_rt_abc \t; b=2",), "kt_rt_abc"),
        ((f'{REFRESH_COOKIE}="kt_rt_abc"',), "kt_rt_abc"),
        ((f"{REFRESH_COOKIE}=",), ""),
        ((f"{REFRESH_COOKIE}=kt_rt_old; {REFRESH_COOKIE}=kt_rt_new",), "kt_rt_new"),
        ((f"{REFRESH_COOKIE}=kt_rt_old", f"{REFRESH_COOKIE}=kt_rt_new"), "kt_rt_new"),
        ((f"x{REFRESH_COOKIE}=no; {REFRESH_COOKIE}x=no; {REFRESH_COOKIE.lower()}=no",), None),
        ((f'a="{REFRESH_COOKIE}=no"',), None),
    ],
)
def test_refresh_cookie_is_read_by_its_exact_name(headers: tuple[str, ...], found: str | None) -> None:
    """The value of the pair named exactly __Secure-keyturn-refresh (RFC 6265 §5.4), spaces and one pair
    of quotes around it dropped; the last one sent wins, as in Starlette's ``request.cookies``."""
    assert refresh_cookie(request(*headers)) == found


@pytest.mark.parametrize("worst", list(WORST_COOKIES.values()), ids=ids(WORST_COOKIES))
def test_refresh_cookie_lookup_is_linear_on_its_worst_cases(worst: str) -> None:
    """On a Cookie header of 16 KiB (the header bound), each worst case costs a small multiple of a
    benign header of the same size (``request.cookies`` took a quarter of a second on the first one)."""
    assert len(worst) == len(BENIGN_COOKIE) == COOKIE_HEADER
    headers = {value: request(value) for value in (worst, BENIGN_COOKIE)}
    assert cost_ratio(lambda value: refresh_cookie(headers[value]), worst, BENIGN_COOKIE, bound=40) < 40


def _filtered(*cookie_headers: bytes) -> list[tuple[bytes, bytes]]:
    """The headers the app behind CookieFilter sees."""
    seen: list[tuple[bytes, bytes]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.extend(scope["headers"])

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    async def drop(message: Message) -> None:
        pass

    scope = {"type": "http", "headers": [(b"x-a", b"1"), *((b"cookie", h) for h in cookie_headers), (b"x-b", b"2")]}
    call = CookieFilter(app)(scope, nothing, drop)
    with pytest.raises(StopIteration):  # nothing in it waits: run it to the end without a loop
        call.send(None)
    return seen


def test_cookie_filter_leaves_one_refresh_cookie_of_cookie_characters() -> None:
    """Other cookies go; the refresh cookie stays, unquoted, or emptied if it holds anything a token
    cannot (quotes, backslashes, spaces, commas); no Cookie header comes from nothing."""
    token = f"kt_rt_{'A' * 40}-_"
    assert _filtered() == [(b"x-a", b"1"), (b"x-b", b"2")]
    assert _filtered(b"a=1; b=2") == [(b"x-a", b"1"), (b"x-b", b"2")]
    expected = [(b"x-a", b"1"), (b"x-b", b"2"), (b"cookie", f"{REFRESH_COOKIE}={token}".encode())]
    assert _filtered(f'a=1; {REFRESH_COOKIE}="{token}"; b=2'.encode()) == expected
    assert _filtered(b"a=1", f"{REFRESH_COOKIE}={token}".encode()) == expected
    for odd in ('"kt_rt_a\\"b"', "kt rt", "a,b", '"\\a\\a"'):
        assert _filtered(f"{REFRESH_COOKIE}={odd}".encode())[-1] == (b"cookie", f"{REFRESH_COOKIE}=".encode())


@pytest.mark.parametrize("worst", list(WORST_COOKIES.values()), ids=ids(WORST_COOKIES))
def test_request_cookies_behind_the_filter_are_linear_on_the_worst_cases(worst: str) -> None:
    """What FastAPI does on every request, parsing ``request.cookies``, costs a small multiple of a
    benign header once CookieFilter has run (without it: a quarter of a second on the first one)."""

    def parse(value: str) -> None:
        Request({"type": "http", "headers": _filtered(value.encode("latin-1"))}).cookies  # noqa: B018

    assert cost_ratio(parse, worst, BENIGN_COOKIE, bound=40) < 40

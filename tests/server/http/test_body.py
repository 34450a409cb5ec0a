"""Unit tests of ``keyturn.server.http.body.parse_json_body`` (no I/O), and integration tests in-process
(the app on a real SQLite file) showing that every JSON route parses its body with it."""

from __future__ import annotations

import codecs
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import given
from hypothesis import strategies as st

from keyturn.core.errors import InvalidRequest
from keyturn.server.http import admin, create_app, recovery, routes
from keyturn.server.http.body import MAX_JSON_DEPTH, JSONBodyRoute, parse_json_body
from tests.conftest import make_settings
from tests.helpers import PASSWORD, bearer, signed_in
from tests.hostile import BENIGN_BODY, MAX_BODY, WORST_BODIES, ids
from tests.timing import cost_ratio


def refusal(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_body(raw)
    return caught.value


def test_duplicate_members_are_refused_at_any_depth() -> None:
    """A member named twice is refused (reason json_duplicate_member), not resolved to the last one."""
    for raw in (b'{"password": "a", "password": "b"}', b'{"a": [{"k": 1, "k": 1}]}'):
        error = refusal(raw)
        assert error.reason == "json_duplicate_member"
        assert "twice" in error.description
    assert parse_json_body(b'{"a": {"k": 1}, "b": {"k": 1}}') == {"a": {"k": 1}, "b": {"k": 1}}


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig", "latin-1"]
)
def test_only_utf8_without_a_byte_order_mark_is_accepted(encoding: str) -> None:
    """UTF-16 and UTF-32 (with a BOM or without), a UTF-8 BOM and Latin-1 are refused as not UTF-8."""
    raw = json.dumps({"username": "zoë", "password": PASSWORD}, ensure_ascii=False).encode(encoding)
    error = refusal(raw)
    assert error.reason == "json_encoding"
    assert "UTF-8" in error.description
    assert parse_json_body(raw.decode(encoding).encode()) == {"username": "zoë", "password": PASSWORD}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant: str) -> None:
    """RFC 8259 §6 has no NaN or Infinity: refused as invalid JSON, naming the word."""
    error = refusal(b'{"a": %s}' % constant.encode())
    assert error.reason == "json_invalid"
    assert constant in error.description


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b" ", b'{"a": 1} {}', b'"\x01"', b"[" + b"9" * 5000 + b"]", b'{"a": "\\ud800"'], ids=repr
)
def test_anything_else_that_is_not_json_is_refused_as_invalid(raw: bytes) -> None:
    """Broken JSON, trailing data, raw control characters and integers too long to convert: json_invalid."""
    assert refusal(raw).reason == "json_invalid"


def test_nesting_is_bounded_at_the_limit() -> None:
    """16 levels parse; 17, or 100,000, are refused (json_too_deep); brackets inside strings do not count."""
    assert MAX_JSON_DEPTH == 16
    assert parse_json_body(b"[" * 16 + b"]" * 16) == json.loads("[" * 16 + "]" * 16)
    for raw in (b"[" * 17 + b"]" * 17, b'{"a":' * 17 + b"1" + b"}" * 17, b"[" * 100_000 + b"]" * 100_000):
        error = refusal(raw)
        assert error.reason == "json_too_deep"
        assert "nested too deeply" in error.description
    strings = {
        "password": "[[[[[[[[[[[[[[[[[[[[",
        "quoted": '\\"[{[{[{[{[{[{[{[{[{[{',
        "slashes": "\\\\" * 20 + "{" * 20,
    }
    assert parse_json_body(json.dumps([strings]).encode()) == [strings]


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_TRICKY = st.text(alphabet='[]{}"\\/ a\n\u00e9', max_size=12)
_JSON = st.recursive(
    st.none() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=12,
)


@given(value=_JSON, wraps=st.integers(min_value=0, max_value=20), ascii_only=st.booleans())
def test_depth_check_agrees_with_the_parsed_value(value: Any, wraps: int, ascii_only: bool) -> None:
    """Whatever the strings hold (brackets, quotes, backslashes), a body is refused as too deep exactly
    when its parsed value nests beyond the limit."""
    for _ in range(wraps):
        value = [value] if wraps % 2 else {"k": value}
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    if _depth(value) > MAX_JSON_DEPTH:
        assert refusal(raw).reason == "json_too_deep"
    else:
        assert parse_json_body(raw) == value


@pytest.mark.parametrize("worst", list(WORST_BODIES.values()), ids=ids(WORST_BODIES))
def test_parsing_is_linear_on_its_worst_cases(worst: bytes) -> None:
    """Each worst case of 64 KiB costs a small multiple of a benign body of the same size (about 6
    for 21,000 empty objects, up to 30 on a loaded machine; a quadratic step costs thousands of
    times more at this size: 7,300 for the regex this parser replaced)."""

    def parse(raw: bytes) -> None:
        with contextlib.suppress(InvalidRequest):
            parse_json_body(raw)

    assert len(worst) == len(BENIGN_BODY) == MAX_BODY
    assert cost_ratio(parse, worst, BENIGN_BODY, bound=100) < 100


def test_every_route_with_a_json_body_parses_it_with_the_one_parser(tmp_path: Path) -> None:
    """Every route of the app that takes a body is a JSONBodyRoute (its JSON goes through parse_json_body)."""
    app = create_app(make_settings(tmp_path / "keyturn.db"))
    mine = [*routes.router.routes, *admin.router.routes, *recovery.router.routes, *app.routes]
    with_body = [r for r in mine if isinstance(r, APIRoute) and r.body_field is not None]
    assert {r.path for r in with_body} == {
        f"/v1/auth/{name}" for name in ("login", "register", "refresh", "logout", "password", "sessions/{session_id}")
    } | {"/v1/admin/keys/rotate", "/v1/admin/clients"} | set(RECOVERY)
    assert all(isinstance(r, JSONBodyRoute) for r in with_body)


def valid_body(path: str, tokens: dict[str, Any]) -> dict[str, Any]:
    """A body each JSON route would take from the signed-in user ``body``."""
    return {
        "/v1/auth/login": {"username": "body", "password": PASSWORD},
        "/v1/auth/register": {"username": "someone-new", "password": PASSWORD},
        "/v1/auth/refresh": {"refresh_token": tokens["refresh_token"]},
        "/v1/auth/logout": {"refresh_token": tokens["refresh_token"]},
        "/v1/auth/password": {"current_password": PASSWORD, "new_password": "an entirely new passphrase"},
        "/v1/auth/sessions/{session_id}": {"device_name": "laptop"},
        "/v1/admin/keys/rotate": {"delay": "10m"},
        "/v1/admin/clients": {"client_id": "billing-cron"},
        **RECOVERY,
    }[path]


# The recovery routes' bodies; a link's token here is no real one (refused as invalid_grant, parsed all the same).
RECOVERY: dict[str, dict[str, Any]] = {
    "/v1/auth/email/verify": {"token": "kt_et_" + "A" * 43},
    "/v1/auth/email/resend": {"email": "body@example.com"},
    "/v1/auth/password/forgot": {"email": "body@example.com"},
    "/v1/auth/password/reset": {"token": "kt_et_" + "A" * 43, "new_password": "an entirely new passphrase"},
}


def duplicated(body: dict[str, Any]) -> bytes:
    """``body`` with its first member sent twice, a decoy first: where the last wins, it is accepted."""
    first = next(iter(body))
    return b'{"%s": "decoy", ' % first.encode() + json.dumps(body).encode()[1:]


BAD_BODIES = {
    "duplicate member": (duplicated, "twice"),
    "UTF-16 with a BOM": (lambda body: json.dumps(body).encode("utf-16"), "UTF-8"),
    "UTF-8 with a BOM": (lambda body: codecs.BOM_UTF8 + json.dumps(body).encode(), "UTF-8"),
}
JSON_ROUTES = [
    "/v1/auth/login",
    "/v1/auth/register",
    "/v1/auth/refresh",
    "/v1/auth/logout",
    "/v1/auth/password",
    "/v1/auth/sessions/{session_id}",
    "/v1/admin/keys/rotate",
    "/v1/admin/clients",
    *RECOVERY,
]
METHODS = {"/v1/auth/sessions/{session_id}": "PATCH"}  # the others are POST


@pytest.mark.anyio
@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("bad", list(BAD_BODIES), ids=ids(BAD_BODIES))
async def test_every_json_route_refuses_duplicates_and_other_encodings_with_400(
    client: httpx.AsyncClient, path: str, bad: str
) -> None:
    """A duplicate member or a body that is not plain UTF-8 is 400 invalid_request on every JSON route,
    saying why, where the same body in UTF-8 is taken (today's main let the last member win, and took
    UTF-16 on /login)."""
    tokens = await signed_in(client, "body")
    encode, why = BAD_BODIES[bad]
    headers = {**bearer(tokens), "content-type": "application/json"}
    method, url = METHODS.get(path, "POST"), path.format(session_id=tokens["session_id"])
    response = await client.request(method, url, content=encode(valid_body(path, tokens)), headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert why in response.json()["error_description"]
    assert set(response.json()) == {"error", "error_description"}
    control = await client.request(method, url, json=valid_body(path, tokens), headers=bearer(tokens))
    # Parsed: 403 on the admin routes ("body" is no admin), invalid_grant for the links' fake tokens.
    assert control.status_code != 400 or control.json()["error"] != "invalid_request", control.text


@pytest.mark.anyio
async def test_a_login_body_that_parses_still_signs_in(client: httpx.AsyncClient) -> None:
    """The parser changes nothing for a well-formed body: UTF-8 with non-ASCII text signs in."""
    await signed_in(client, "zoë")
    body = json.dumps({"username": "zoë", "password": PASSWORD}, ensure_ascii=False).encode()
    response = await client.post("/v1/auth/login", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200

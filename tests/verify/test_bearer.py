"""Unit tests (no I/O) of keyturn.verify.bearer, the RFC 6750 edge every adapter and the server share:
reading the bearer token of an ``Authorization`` header, and the answer for each error.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyturn.core.errors import (
    InsufficientScope,
    InvalidCredentials,
    KeyturnError,
    MalformedToken,
    MissingToken,
    RateLimited,
    TokenExpired,
    Unavailable,
)
from keyturn.verify.bearer import NO_STORE, STATUS, answer, bearer_token


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"), ("Bearer\tx", None)],
)
def test_the_token_of_a_bearer_header(header: str, token: str | None) -> None:
    """The scheme is case-insensitive (RFC 9110 §11.1) and surrounding spaces go; a tab is no separator."""
    if token is None:
        with pytest.raises(MissingToken):
            bearer_token(header)
    else:
        assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwdw==", "Token abc", "Bearerabc"])
def test_no_bearer_header_is_a_missing_token(header: str | None) -> None:
    """No header, or another scheme: missing_token, which RFC 6750 §3.1 answers without an error code."""
    with pytest.raises(MissingToken) as excinfo:
        bearer_token(header)
    assert (excinfo.value.code, excinfo.value.reason) == ("invalid_token", "missing_token")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer   ", "Bearer a b"])
def test_a_bearer_header_without_one_usable_token_is_malformed(header: str) -> None:
    """``Bearer`` with nothing, or with two words, after it: malformed (RFC 6750 §2.1: one b64token)."""
    with pytest.raises(MalformedToken) as excinfo:
        bearer_token(header)
    assert (excinfo.value.code, excinfo.value.reason) == ("invalid_token", "malformed")


@pytest.mark.parametrize(
    ("error", "status", "challenge"),
    [
        (MissingToken(), 401, 'Bearer realm="api"'),
        (TokenExpired(datetime(2026, 1, 1, tzinfo=UTC)), 401, 'Bearer realm="api", error="invalid_token"'),
        (MalformedToken(), 401, 'Bearer realm="api", error="invalid_token"'),
        (InsufficientScope(("a", "b")), 403, 'Bearer realm="api", error="insufficient_scope", scope="a b"'),
        (InvalidCredentials(), 401, 'Bearer realm="api"'),
        (Unavailable(), 503, None),
    ],
)
def test_answers_carry_the_status_and_challenge_of_rfc_6750(
    error: KeyturnError, status: int, challenge: str | None
) -> None:
    """Each refusal's status comes from STATUS, with the RFC 6750 §3 challenge, never cached."""
    reply = answer(error, "api")
    assert reply.status == status == STATUS[error.code]
    assert reply.headers.get("WWW-Authenticate") == challenge
    assert reply.body == {"error": error.code, "error_description": error.description}
    assert {k: reply.headers[k] for k in NO_STORE} == NO_STORE


def test_retry_after_says_when_to_come_back() -> None:
    """503 asks for a retry in a second; 429 names the limit's own wait."""
    assert answer(Unavailable()).headers["Retry-After"] == "1"
    assert answer(RateLimited(retry_after=42)).headers["Retry-After"] == "42"


METADATA = "https://api.example.com/.well-known/oauth-protected-resource"
NAMED = f'resource_metadata="{METADATA}"'


@pytest.mark.parametrize(
    ("error", "challenge"),
    [
        (MissingToken(), f'Bearer realm="api", {NAMED}'),
        (TokenExpired(datetime(2026, 1, 1, tzinfo=UTC)), f'Bearer realm="api", error="invalid_token", {NAMED}'),
        (InsufficientScope(("a",)), f'Bearer realm="api", error="insufficient_scope", scope="a", {NAMED}'),
        (InvalidCredentials(), f'Bearer realm="api", {NAMED}'),
        (Unavailable(), None),
    ],
)
def test_every_bearer_challenge_names_the_resource_metadata(error: KeyturnError, challenge: str | None) -> None:
    """RFC 9728 §5.1: given a metadata URL, each 401 and 403 insufficient_scope challenge names it; a 503 has none."""
    assert answer(error, "api", resource_metadata=METADATA).headers.get("WWW-Authenticate") == challenge


def test_without_a_metadata_url_the_challenges_are_as_before() -> None:
    """The server passes no URL: its challenges carry no resource_metadata (the default is None)."""
    for error in (MissingToken(), MalformedToken(), InsufficientScope(("a",)), InvalidCredentials()):
        assert "resource_metadata" not in answer(error).headers["WWW-Authenticate"]
        assert answer(error, resource_metadata=None).headers == answer(error).headers


def test_the_metadata_url_stays_one_quoted_string() -> None:
    """A quote or backslash (which no accepted URL holds) is escaped as a quoted-pair (RFC 9110 §5.6.4)."""
    challenge = answer(MissingToken(), "api", resource_metadata='https://x/"a\\b').headers["WWW-Authenticate"]
    assert challenge == 'Bearer realm="api", resource_metadata="https://x/\\"a\\\\b"'

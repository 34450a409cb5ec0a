"""Unit tests (no I/O) of keyturn.client's token record and memory store (``_tokenstore``).

What the record promises: lifetimes read from a token response without ever echoing a value, a
refresh due early enough, and a JSON form with a version marker. What the memory store promises:
a lock that gives up with ``Unavailable`` instead of hanging.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from keyturn.client import MemoryTokenStore, Tokens
from keyturn.core.errors import Unavailable

PAIR = Tokens("a", "r", issued_at=0, expires_at=900, session_id="s")
RESPONSE: dict[str, Any] = {
    "access_token": "secret-at", "token_type": "Bearer", "expires_in": 60, "refresh_token": "secret-rt",
    "refresh_token_expires_in": 3600, "session_id": "s", "scope": "profile",
}  # fmt: skip


def test_refresh_is_due_a_third_of_the_lifetime_or_thirty_seconds_before_expiry() -> None:
    """Margin = min(30 s, lifetime/3): a 3 s token is due at 2 s, a 15 min token 30 s before expiry."""
    short = Tokens("a", "r", issued_at=100, expires_at=103, session_id="s")
    assert not short.needs_refresh(101.9)
    assert short.needs_refresh(102.0)
    long = Tokens("a", "r", issued_at=0, expires_at=900, session_id="s")
    assert not long.needs_refresh(869.9)
    assert long.needs_refresh(870.0)


def test_token_response_is_validated_without_echoing_values() -> None:
    """A token response missing its refresh token is refused; the message names the field only."""
    body = {"access_token": "secret-at", "token_type": "Bearer", "expires_in": 60, "session_id": "s"}
    with pytest.raises(ValueError, match="'refresh_token'") as refused:
        Tokens.from_response(body, sent_at=0)
    assert "secret-at" not in str(refused.value)


def test_token_response_gives_lifetimes_from_the_moment_it_was_asked_for() -> None:
    """Lifetimes count from when the request was sent, so they err on the early side."""
    tokens = Tokens.from_response({**RESPONSE, "token_type": "bearer"}, sent_at=1000)
    assert tokens == Tokens(
        "secret-at", "secret-rt", issued_at=1000, expires_at=1060, session_id="s", scope="profile",
        refresh_expires_at=4600,
    )  # fmt: skip
    assert Tokens.from_response({**RESPONSE, "refresh_token_expires_in": None}, sent_at=0).refresh_expires_at is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"token_type": "MAC"}, "'token_type' is not Bearer"),
        ({"expires_in": -1}, "'expires_in'"),
        ({"expires_in": True}, "'expires_in'"),
        ({"expires_in": float("nan")}, "'expires_in'"),
        ({"session_id": ""}, "'session_id'"),
        ({"refresh_token_expires_in": "soon"}, "'refresh_token_expires_in'"),
    ],
)
def test_token_response_refusals_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field) as refused:
        Tokens.from_response({**RESPONSE, **change}, sent_at=0)
    assert "secret" not in str(refused.value)


def test_token_response_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        Tokens.from_response(["secret-at"], sent_at=0)


def test_repr_shows_no_token() -> None:
    tokens = Tokens.from_response(RESPONSE, sent_at=0)
    assert "secret" not in repr(tokens)
    assert "secret" not in repr(MemoryTokenStore(tokens))


def test_json_form_round_trips_and_carries_a_format_marker() -> None:
    tokens = Tokens.from_response(RESPONSE, sent_at=5)
    assert tokens.to_json()["format"] == 1
    assert Tokens.from_json(json.loads(json.dumps(tokens.to_json()))) == tokens


def test_memory_store_lock_gives_up_with_unavailable() -> None:
    """A thread that holds the lock too long makes another wait, then raise, not hang."""
    store = MemoryTokenStore(PAIR, timeout=0.2)
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock():
            taken.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        with pytest.raises(Unavailable, match=r"locked for 0\.2 s"), store.lock():
            pass
    finally:
        done.set()
        holder.join(10)
    with store.lock():
        assert store.load() == PAIR

"""Unit tests (no I/O) of keyturn.core.revocations: the feed's wire format (entries, cursors,
pages) as written and as refused, and ``EndedSessions``, the verifier's set of ended sessions,
with ``now`` passed in."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyturn.core.revocations import Cursor, EndedSessions, FeedPage, Revocation

EPOCH = uuid.UUID(int=0x5EED).hex
AT = datetime(2026, 3, 1, 9, 30, 0, 250_000, tzinfo=UTC)
ENTRY = {"sid": str(uuid.UUID(int=1)), "at": 1_772_357_400, "until": 1_772_358_305, "reason": "logout"}


def entry(sid: str = "s", until: int = 1000, at: int = 0) -> Revocation:
    return Revocation(sid, at, until, "logout")


# --- Revocation -------------------------------------------------------------------------------


def test_an_entry_of_a_session_rounds_at_down_and_until_up() -> None:
    """``of`` names the session by its UUID text and widens the window to whole seconds (never narrows it)."""
    sid = uuid.uuid4()
    revoked = Revocation.of(sid, AT, AT + timedelta(minutes=15, seconds=5), "password_changed")
    whole = int(datetime(2026, 3, 1, 9, 30, tzinfo=UTC).timestamp())
    assert revoked == Revocation(str(sid), whole, whole + 905 + 1, "password_changed")


def test_an_entry_survives_its_json_round_trip() -> None:
    """from_json(to_json(e)) == e, through real JSON text."""
    revoked = Revocation.of(uuid.uuid4(), AT, AT + timedelta(minutes=15), "logout")
    assert Revocation.from_json(json.loads(json.dumps(revoked.to_json()))) == revoked
    assert Revocation.from_json(ENTRY).to_json() == ENTRY


def test_an_entry_without_a_reason_has_an_empty_one() -> None:
    """The reason is informative only: a feed that leaves it out is still read."""
    assert Revocation.from_json({k: v for k, v in ENTRY.items() if k != "reason"}).reason == ""


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ([ENTRY], "JSON object"),
        ("sid", "JSON object"),
        (None, "JSON object"),
        ({k: v for k, v in ENTRY.items() if k != "sid"}, "sid"),
        ({**ENTRY, "sid": ""}, "sid"),
        ({**ENTRY, "sid": "x" * 65}, "sid"),
        ({**ENTRY, "sid": 7}, "sid"),
        ({k: v for k, v in ENTRY.items() if k != "at"}, "whole seconds"),
        ({**ENTRY, "at": True}, "whole seconds"),
        ({**ENTRY, "until": False}, "whole seconds"),
        ({**ENTRY, "at": 1.0}, "whole seconds"),
        ({**ENTRY, "until": 1_772_358_305.5}, "whole seconds"),
        ({**ENTRY, "at": -1}, "whole seconds"),
        ({**ENTRY, "until": -1}, "whole seconds"),
        ({**ENTRY, "until": 2**40}, "whole seconds"),
        ({**ENTRY, "until": "1772358305"}, "whole seconds"),
        ({**ENTRY, "reason": "r" * 33}, "reason"),
        ({**ENTRY, "reason": None}, "reason"),
    ],
    ids=[
        "list", "string", "null", "no-sid", "empty-sid", "sid-65", "sid-int", "no-at", "at-bool", "until-bool",
        "at-float", "until-float", "at-negative", "until-negative", "until-huge", "until-string", "reason-33",
        "reason-null",
    ],
)  # fmt: skip
def test_an_entry_that_is_not_one_is_refused_saying_which_part(raw: object, says: str) -> None:
    """Anything but an object with a 1..64 character sid, whole non-negative seconds and a short reason."""
    with pytest.raises(ValueError, match=says):
        Revocation.from_json(raw)


def test_a_sid_of_64_characters_is_the_longest_accepted() -> None:
    """The bound is inclusive: 64 characters pass, 65 do not (above)."""
    assert Revocation.from_json({**ENTRY, "sid": "x" * 64}).sid == "x" * 64


# --- Cursor -----------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [0, 1, 42, 10**18 - 1])
def test_a_cursor_parses_back_from_its_text(position: int) -> None:
    """Cursor.parse(str(c)) == c, up to the largest 18-digit position."""
    cursor = Cursor(EPOCH, position)
    assert Cursor.parse(str(cursor)) == cursor
    assert str(cursor) == f"{EPOCH}.{position}"


def test_a_cursor_of_64_characters_is_the_longest_accepted() -> None:
    """The length bound is inclusive."""
    text = "e" * 45 + "." + "1" * 18
    assert len(text) == 64
    assert Cursor.parse(text) == Cursor("e" * 45, int("1" * 18))


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        EPOCH,  # no dot
        f".{1}",  # no epoch
        f"{EPOCH}.",  # no position
        f"ab-cd.{1}",  # epoch not alphanumeric
        f"ab cd.{1}",
        f"é{EPOCH[:8]}.1",  # alphanumeric, but not ASCII
        f"{EPOCH}.١٢",  # Arabic-Indic digits: str.isdigit() says yes
        f"{EPOCH}.²",  # a superscript digit: str.isdigit() says yes, int() says no
        f"{EPOCH}.-1",
        f"{EPOCH}.+1",
        f"{EPOCH}. 1",
        f"{EPOCH}.1 ",
        f"{EPOCH}.1.2",
        f"{EPOCH}.1e3",
        f"{EPOCH}.0x10",
        f"{EPOCH}.1_000",
        f"{EPOCH[:8]}.{'1' * 19}",  # 19 digits: past a BIGINT
        "e" * 46 + "." + "1" * 18,  # 65 characters
    ],
    ids=[
        "empty", "dot", "no-dot", "no-epoch", "no-position", "dash", "space", "non-ascii-epoch", "arabic-digits",
        "superscript", "negative", "plus", "leading-space", "trailing-space", "two-dots", "exponent", "hex",
        "underscore", "19-digits", "65-chars",
    ],
)  # fmt: skip
def test_a_cursor_no_feed_sent_is_none(text: str) -> None:
    """Anything but ``<ASCII alphanumeric epoch>.<at most 18 ASCII digits>`` within 64 characters."""
    assert Cursor.parse(text) is None


@pytest.mark.parametrize("text", ["a" * 1_000_000 + ".1", "a." + "1" * 1_000_000, "." * 1_000_000])
def test_a_megabyte_cursor_is_refused(text: str) -> None:
    """A huge cursor is refused by its length before anything reads it (it is a query parameter
    a caller chooses); no timing asserted, a quadratic parse would show in the suite's time."""
    assert Cursor.parse(text) is None


# --- FeedPage ---------------------------------------------------------------------------------


def page() -> FeedPage:
    entries = (Revocation.from_json(ENTRY), Revocation("another-session", 10, 20, "user_disabled"))
    return FeedPage(Cursor(EPOCH, 17), entries, more=True, reset=True)


def test_a_page_survives_its_json_round_trip() -> None:
    """from_json(to_json(p)) == p, through real JSON text, with the wire names the docs show."""
    sent = page()
    wire = json.loads(json.dumps(sent.to_json()))
    assert set(wire) == {"cursor", "reset", "more", "entries"}
    assert wire["cursor"] == f"{EPOCH}.17"
    assert FeedPage.from_json(wire) == sent


def test_a_page_without_flags_is_neither_more_nor_reset() -> None:
    """more and reset default to False; an empty entries list is a page."""
    assert FeedPage.from_json({"cursor": f"{EPOCH}.0", "entries": []}) == FeedPage(Cursor(EPOCH, 0), ())


def _wire(**changes: Any) -> dict[str, Any]:
    wire = page().to_json()
    wire.update(changes)
    return {k: v for k, v in wire.items() if v is not _GONE}


_GONE = object()


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "page",
        None,
        _wire(cursor=_GONE),
        _wire(cursor=17),
        _wire(cursor="no-dot"),
        _wire(cursor=f"{EPOCH}.١٢"),
        _wire(entries=_GONE),
        _wire(entries={"sid": "s"}),
        _wire(entries=None),
        _wire(more="true"),
        _wire(more=1),
        _wire(reset=None),
        _wire(reset=0),
        _wire(entries=[ENTRY, {**ENTRY, "at": True}]),
        _wire(entries=[ENTRY, "sid"]),
    ],
    ids=[
        "list", "string", "null", "no-cursor", "int-cursor", "bad-cursor", "arabic-cursor", "no-entries",
        "object-entries", "null-entries", "string-more", "int-more", "null-reset", "int-reset", "bad-entry",
        "string-entry",
    ],
)  # fmt: skip
def test_a_page_that_is_not_one_is_refused(raw: object) -> None:
    """A page needs a cursor a feed could send, a list of valid entries and boolean flags; one
    bad entry refuses the whole page."""
    with pytest.raises(ValueError, match=r"a page|an entry"):
        FeedPage.from_json(raw)


# --- EndedSessions ----------------------------------------------------------------------------


def test_an_added_session_is_in_and_others_are_not() -> None:
    """Membership is by session id."""
    ended = EndedSessions()
    ended.add([entry("a"), entry("b")], now=0)
    assert "a" in ended
    assert "b" in ended
    assert "c" not in ended
    assert len(ended) == 2


def test_a_session_is_forgotten_exactly_at_until_plus_leeway() -> None:
    """Kept while ``now < until + leeway``; gone at that instant."""
    ended = EndedSessions(leeway=5)
    ended.add([entry("a", until=1000)], now=0)
    ended.forget(1004.999)
    assert "a" in ended
    ended.forget(1005)
    assert "a" not in ended
    assert len(ended) == 0


def test_adding_also_forgets_what_is_past() -> None:
    """A page arriving later sweeps the entries whose time is over."""
    ended = EndedSessions()
    ended.add([entry("old", until=100)], now=0)
    ended.add([entry("new", until=300)], now=100)
    assert "old" not in ended
    assert "new" in ended


@pytest.mark.parametrize("now", [1005, 1006, 10**9])
def test_an_entry_already_past_is_not_added(now: float) -> None:
    """An entry whose tokens have all expired at ``now`` (a reader catching up) takes no memory."""
    ended = EndedSessions(leeway=5)
    ended.add([entry("a", until=1000)], now=now)
    assert "a" not in ended
    assert len(ended) == 0


def test_a_later_until_for_the_same_session_extends_it() -> None:
    """The same session listed again with a later ``until`` is kept until the later one."""
    ended = EndedSessions()
    ended.add([entry("a", until=100)], now=0)
    ended.add([entry("a", until=200)], now=0)
    ended.forget(150)
    assert "a" in ended
    assert len(ended) == 1
    ended.forget(200)
    assert "a" not in ended


def test_an_earlier_until_for_the_same_session_does_not_shorten_it() -> None:
    """A repeat with an earlier ``until`` (a backfilled or replayed entry) changes nothing."""
    ended = EndedSessions()
    ended.add([entry("a", until=200)], now=0)
    ended.add([entry("a", until=100)], now=0)
    ended.forget(150)
    assert "a" in ended
    ended.forget(200)
    assert "a" not in ended


def test_an_entry_behind_a_later_one_is_never_forgotten_early() -> None:
    """Out-of-order ``until`` values (instances with different lifetimes) may be kept longer,
    never shorter: refusing a little longer is safe, accepting an ended session is not."""
    ended = EndedSessions()
    ended.add([entry("late", until=500), entry("early", until=100)], now=0)
    for now in (0, 50, 99.999):
        ended.forget(now)
        assert "early" in ended
    ended.forget(500)
    assert len(ended) == 0


def test_memory_stays_bounded_by_the_sessions_ended_within_one_token_lifetime() -> None:
    """A reader adding one ended session per second, each kept 100 s (+ 5 s leeway), never holds
    more than 105 of them, whatever the run's length; the same session ended again and again
    counts once."""
    ended = EndedSessions(leeway=5)
    for second in range(3000):
        ended.add([entry(f"s{second}", until=second + 100), entry("again", until=second + 100)], now=second)
        assert len(ended) <= 106  # 105 sessions ended in the last 105 s, and "again"
    assert len(ended) == 106
    ended.forget(3000 + 105)
    assert len(ended) == 0

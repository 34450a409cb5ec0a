"""Integration tests of keyturn.server.service.feed on a real database (SQLite file and PostgreSQL),
with a hand-moved clock: every way a session ends is published with its reason and the time its
tokens stop verifying; cursors (bad, from another database); and long polls (answered at once,
woken by a concurrent logout, timing out, woken by ``close``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from keyturn.core.errors import InvalidCredentials, InvalidRequest, InvalidToken, RefreshTokenReused
from keyturn.core.passwords import Passwords
from keyturn.server.service import Caller, Service, TokenPair
from tests.conftest import Clock, make_settings
from tests.server.service.usecases import PW, WHO

pytestmark = pytest.mark.anyio
NEW = "a whole new passphrase"
OTHER_EPOCH = "0" * 32


async def cursor_now(service: Service) -> str:
    """The cursor a reader holds once it has read everything so far."""
    return str((await service.feed.page()).cursor)


async def published(service: Service, clock: Clock, after: str) -> list[tuple[str, str]]:
    """The entries after ``after`` as (session id, reason), checking that each was ended now and
    is kept for exactly one access-token lifetime plus the leeway (whole seconds)."""
    page = await service.feed.page(after)
    assert (page.more, page.reset) == (False, False)
    at = int(clock().timestamp())
    kept = int((service.settings.access_token_ttl + service.settings.leeway).total_seconds())
    assert [(e.at, e.until) for e in page.entries] == [(at, at + kept)] * len(page.entries)
    return [(e.sid, e.reason) for e in page.entries]


async def signed_in(service: Service, sessions: int = 1, name: str = "alice") -> list[tuple[TokenPair, Caller]]:
    await service.auth.create_user(name, PW, WHO)
    pairs = [await service.auth.login(name, PW, WHO) for _ in range(sessions)]
    return [(pair, await service.auth.authenticate(pair.access_token)) for pair in pairs]


# --- every way a session ends -----------------------------------------------------------------


async def test_logout_by_access_token_publishes_that_session(service: Service, clock: Clock) -> None:
    """Only the session the access token names, reason logout; another user's session is untouched."""
    (_, caller), (other, _) = await signed_in(service, 2)
    await signed_in(service, 1, "bob")
    after = await cursor_now(service)
    await service.auth.logout(caller, None, WHO)
    assert await published(service, clock, after) == [(str(caller.session.id), "logout")]
    assert other.session_id != str(caller.session.id)


async def test_logout_by_refresh_token_publishes_that_session(service: Service, clock: Clock) -> None:
    """A logout with only the refresh token ends and publishes the session it names."""
    [(pair, _), _] = await signed_in(service, 2)
    after = await cursor_now(service)
    await service.auth.logout(None, pair.refresh_token, WHO)
    assert await published(service, clock, after) == [(pair.session_id, "logout")]


async def test_logout_all_publishes_every_session_of_the_user(service: Service, clock: Clock) -> None:
    """Each of the user's sessions once, reason logout_all; nobody else's."""
    mine = await signed_in(service, 3)
    await signed_in(service, 1, "bob")
    after = await cursor_now(service)
    await service.auth.logout_all(mine[0][1], WHO)
    found = await published(service, clock, after)
    assert sorted(found) == sorted((pair.session_id, "logout_all") for pair, _ in mine)


async def test_signing_out_a_device_publishes_that_session(service: Service, clock: Clock) -> None:
    """revoke_session from another of the user's sessions: that device only, reason session_revoked."""
    [(_, here), (there, _)] = await signed_in(service, 2)
    after = await cursor_now(service)
    await service.auth.revoke_session(here, there.session_id, WHO)
    assert await published(service, clock, after) == [(there.session_id, "session_revoked")]


async def test_a_password_change_publishes_the_other_sessions_not_this_one(service: Service, clock: Clock) -> None:
    """The sessions the change ended, reason password_changed; the session that changed it goes
    on (it is rekeyed, not ended), so it is not in the feed."""
    [(_, here), *others] = await signed_in(service, 3)
    after = await cursor_now(service)
    await service.auth.change_password(here, PW, NEW, WHO)
    found = await published(service, clock, after)
    assert sorted(found) == sorted((pair.session_id, "password_changed") for pair, _ in others)
    assert str(here.session.id) not in {sid for sid, _ in found}


async def test_password_guessing_publishes_the_guessing_session(service: Service, clock: Clock) -> None:
    """The session that spent its wrong current passwords is ended and published, reason
    password_guessing; the user's other session is not."""
    [(_, guesser), _] = await signed_in(service, 2)
    after = await cursor_now(service)
    for _ in range(service.settings.password_change_failures - 1):
        with pytest.raises(InvalidCredentials):
            await service.auth.change_password(guesser, "not the password", NEW, WHO)
        assert await published(service, clock, after) == []
    with pytest.raises(InvalidCredentials):  # the last wrong one: answered as wrong, and the session ends
        await service.auth.change_password(guesser, "not the password", NEW, WHO)
    assert await published(service, clock, after) == [(str(guesser.session.id), "password_guessing")]
    with pytest.raises(InvalidToken) as refused:
        await service.auth.change_password(guesser, PW, NEW, WHO)
    assert refused.value.reason == "session_ended"
    assert await published(service, clock, after) == [(str(guesser.session.id), "password_guessing")]


async def test_reuse_detection_publishes_the_session(service: Service, clock: Clock) -> None:
    """A refresh token of an older generation, after the grace window: the session ends,
    reason reuse_detected."""
    [(pair, _)] = await signed_in(service)
    await service.auth.refresh(pair.refresh_token, WHO)
    clock.advance(service.settings.reuse_grace.total_seconds() + 1)
    after = await cursor_now(service)
    with pytest.raises(RefreshTokenReused):
        await service.auth.refresh(pair.refresh_token, WHO)
    assert await published(service, clock, after) == [(pair.session_id, "reuse_detected")]


async def test_disabling_a_user_publishes_every_session_of_it(service: Service, clock: Clock) -> None:
    """The operator disables an account: each of its sessions, reason user_disabled."""
    mine = await signed_in(service, 2)
    await signed_in(service, 1, "bob")
    after = await cursor_now(service)
    assert await service.admin.disable_user("alice") == 2
    found = await published(service, clock, after)
    assert sorted(found) == sorted((pair.session_id, "user_disabled") for pair, _ in mine)


async def test_an_operator_revoking_a_session_publishes_it(service: Service, clock: Clock) -> None:
    """The operator ends one session: that one, reason admin_revoked."""
    [(pair, _), _] = await signed_in(service, 2)
    after = await cursor_now(service)
    await service.admin.revoke_session(pair.session_id)
    assert await published(service, clock, after) == [(pair.session_id, "admin_revoked")]


# --- cursors ------------------------------------------------------------------------------------


async def test_a_cursor_no_feed_sent_is_refused(service: Service) -> None:
    """page and follow raise InvalidRequest, reason bad_cursor, saying which parameter is wrong."""
    for after in ("", "nonsense", f"{OTHER_EPOCH}.-1", f"{OTHER_EPOCH}.١٢", "x" * 65 + ".1"):
        for read in (service.feed.page(after), service.feed.follow(after, wait=5)):
            with pytest.raises(InvalidRequest) as refused:
                await read
            assert refused.value.reason == "bad_cursor", after
            assert refused.value.description == "The cursor 'after' is not one this feed sent."


async def test_a_cursor_of_another_database_starts_over(service: Service, clock: Clock) -> None:
    """A cursor with another epoch (a deleted development file, another deployment) gets
    ``reset`` and every entry from the start, with a cursor of this database; follow too, at once."""
    [(_, caller)] = await signed_in(service)
    await service.auth.logout(caller, None, WHO)
    fresh = await service.feed.page()
    for read in (service.feed.page(f"{OTHER_EPOCH}.999999"), service.feed.follow(f"{OTHER_EPOCH}.0", wait=5)):
        page = await asyncio.wait_for(read, timeout=2)
        assert page.reset is True
        assert (page.cursor, page.entries) == (fresh.cursor, fresh.entries)
        assert [e.sid for e in page.entries] == [str(caller.session.id)]


async def test_a_cursor_ahead_of_the_feed_starts_over(service: Service) -> None:
    """A cursor of this database but past its newest position (a database restored from a backup
    keeps its epoch, and its positions go on from the backup's) gets ``reset`` and every entry; a
    cursor at the newest position does not."""
    [(_, caller)] = await signed_in(service)
    await service.auth.logout(caller, None, WHO)
    fresh = await service.feed.page()
    epoch, position = fresh.cursor.epoch, fresh.cursor.position
    ahead = await service.feed.page(f"{epoch}.{position + 1}")
    assert ahead.reset is True
    assert (ahead.cursor, ahead.entries) == (fresh.cursor, fresh.entries)
    assert (await service.feed.page(str(fresh.cursor))).reset is False


async def test_the_first_page_has_every_ended_session_whose_tokens_may_still_verify(
    service: Service, clock: Clock
) -> None:
    """Without a cursor: from the start, minus the entries whose tokens have all expired."""
    [(_, first)] = await signed_in(service)
    await service.auth.logout(first, None, WHO)
    clock.advance(60)
    [(_, second)] = await signed_in(service, name="bob")
    await service.auth.logout(second, None, WHO)
    assert [e.sid for e in (await service.feed.page()).entries] == [str(first.session.id), str(second.session.id)]
    clock.advance((service.settings.access_token_ttl + service.settings.leeway).total_seconds() - 30)
    assert [e.sid for e in (await service.feed.page()).entries] == [str(second.session.id)]


async def test_a_small_limit_pages_with_more(service: Service) -> None:
    """``limit`` entries a page, ``more`` while a full page was read, cursors chaining to the end."""
    mine = await signed_in(service, 3)
    await service.auth.logout_all(mine[0][1], WHO)
    sids, after, more = [], None, True
    while more:
        page = await service.feed.page(after, limit=2)
        sids += [e.sid for e in page.entries]
        after, more = str(page.cursor), page.more
    assert sorted(sids) == sorted(pair.session_id for pair, _ in mine)


# --- long polls -------------------------------------------------------------------------------


async def test_follow_answers_at_once_when_entries_are_waiting(service: Service) -> None:
    """Entries after the cursor: no wait at all; a first read (no cursor) is answered at once too."""
    after = await cursor_now(service)
    [(_, caller)] = await signed_in(service)
    await service.auth.logout(caller, None, WHO)
    async with asyncio.timeout(1):
        page = await service.feed.follow(after, wait=2)
        assert [e.sid for e in page.entries] == [str(caller.session.id)]
        assert (await service.feed.follow(None, wait=2)).entries == page.entries


async def test_a_revocation_committed_here_wakes_a_waiting_poll_at_once(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """With the watcher reading only every 5 s, a logout on this instance still answers a waiting
    poll within a second: the commit nudges the watcher."""
    service = Service(make_settings(database_url, revocation_poll="5s"), passwords=fast_passwords, clock=clock)
    await service.start()
    try:
        [(_, caller)] = await signed_in(service)
        after = await cursor_now(service)
        poll = asyncio.create_task(service.feed.follow(after, wait=20))
        await asyncio.sleep(0.3)  # the poll is waiting; its watcher has read once and sleeps 5 s
        assert not poll.done()
        await service.auth.logout(caller, None, WHO)
        async with asyncio.timeout(1):
            page = await poll
        assert [e.sid for e in page.entries] == [str(caller.session.id)]
    finally:
        await service.close()


async def test_follow_is_woken_by_a_logout_soon_after_it(service: Service) -> None:
    """A poll waiting with nothing new returns with the entry within a few of the watcher's polls
    of a concurrent logout, long before its wait is over."""
    [(_, caller)] = await signed_in(service)
    after = await cursor_now(service)
    poll = asyncio.create_task(service.feed.follow(after, wait=10))
    await asyncio.sleep(0.3)  # the poll is waiting (and its watcher polling)
    assert not poll.done()
    await service.auth.logout(caller, None, WHO)
    logged_out = time.monotonic()
    page = await asyncio.wait_for(poll, timeout=10)
    assert time.monotonic() - logged_out < 3
    assert [e.sid for e in page.entries] == [str(caller.session.id)]
    assert page.cursor == (await service.feed.page()).cursor


async def test_follow_with_nothing_happening_returns_an_empty_page_after_the_wait(service: Service) -> None:
    """No news: an empty page with the same cursor, after about ``wait`` seconds (not at once)."""
    after = await cursor_now(service)
    started = time.monotonic()
    page = await service.feed.follow(after, wait=0.3)
    waited = time.monotonic() - started
    assert str(page.cursor) == after
    assert (page.entries, page.more, page.reset) == ((), False, False)
    assert 0.25 <= waited < 2


async def test_close_answers_a_waiting_follow_at_once_and_every_later_one(service: Service) -> None:
    """Feed.close() (the server is stopping) returns a waiting poll now, empty, and a poll that
    comes after it is answered without waiting."""
    after = await cursor_now(service)
    poll = asyncio.create_task(service.feed.follow(after, wait=10))
    await asyncio.sleep(0.3)
    assert not poll.done()
    service.feed.close()
    async with asyncio.timeout(1):
        assert (await poll).entries == ()
        assert (await service.feed.follow(after, wait=10)).entries == ()


async def test_close_before_any_poll_waited_answers_later_polls_at_once(service: Service) -> None:
    """A stop signal that comes before any poll ever waited still ends the waiting of those that
    come after it (the server is draining: none may hold it for ``wait`` seconds)."""
    after = await cursor_now(service)
    service.feed.close()
    async with asyncio.timeout(1):
        assert (await service.feed.follow(after, wait=10)).entries == ()

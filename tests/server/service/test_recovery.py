"""Integration tests of keyturn.server.service.recovery (and the email parts of signin): addresses
on accounts, verification and password reset by email, and the operator's tools, on a real
database (SQLite file and PostgreSQL) with a hand-moved clock. Mail is read as delivered: the
outbox is sent to a real SMTP server on loopback (``tests/smtp.py``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from email.message import EmailMessage
from typing import Any

import pytest

from keyturn.core.errors import (
    EmailNotVerified,
    InvalidCredentials,
    InvalidGrant,
    InvalidRequest,
    NotFound,
    PasswordPolicyError,
    SessionEnded,
    SessionRevoked,
    Unavailable,
    UsernameTaken,
)
from keyturn.core.passwords import Passwords
from keyturn.server.service import Service, UserRecord
from keyturn.server.service.recovery import LINK_REFUSED
from tests.conftest import Clock, make_settings
from tests.server.service.usecases import PW, WHO
from tests.smtp import SmtpServer, link_token, smtp_fixture

pytestmark = pytest.mark.anyio
NEW = "a whole new passphrase"
OTHER = "an entirely new passphrase"
ALICE = "alice@example.com"


smtp = smtp_fixture()


async def started(database_url: str, clock: Clock, passwords: Passwords, **overrides: Any) -> Service:
    svc = Service(make_settings(database_url, **overrides), passwords=passwords, clock=clock)
    await svc.start()
    return svc


@pytest.fixture
async def svc(database_url: str, clock: Clock, fast_passwords: Passwords, smtp: SmtpServer) -> AsyncIterator[Service]:
    """A service whose mail goes to the test SMTP server (sent when the test delivers the outbox)."""
    service = await started(database_url, clock, fast_passwords, mail_url=smtp.url)
    yield service
    await service.close()


async def mailed(svc: Service, smtp: SmtpServer, to: str, count: int = 1) -> EmailMessage:
    """Send what the outbox holds, and the ``count``-th message the SMTP server got for ``to``."""
    await svc.postman.deliver_due()
    return smtp.wait_for(to, count=count, timeout=5)


async def delivered(svc: Service, smtp: SmtpServer) -> list[tuple[str, str]]:
    """Send what the outbox holds; every message the server has as (to, subject), in order."""
    await svc.postman.deliver_due()
    async with svc.store.read() as tx:
        assert await tx.outbox_waiting() == 0
    return [(str(m["To"]), str(m["Subject"])) for m in smtp.messages]


async def refused_link(call: Awaitable[object]) -> None:
    """``call`` is refused as a link: InvalidGrant, reason link_refused, the one description."""
    with pytest.raises(InvalidGrant) as caught:
        await call
    assert (caught.value.reason, caught.value.description) == ("link_refused", LINK_REFUSED)


async def registered(svc: Service, smtp: SmtpServer, name: str = "alice", email: str = ALICE) -> str:
    """Register ``name`` with ``email``; the token of the verification link mailed to it."""
    await svc.auth.register(name, PW, WHO, email)
    return link_token(await mailed(svc, smtp, email), "verify-email")


def received(smtp: SmtpServer, to: str) -> int:
    """How many messages the SMTP server has got for ``to``."""
    return sum(str(m["To"]).lower() == to.lower() for m in smtp.messages)


async def reset_link(svc: Service, smtp: SmtpServer, email: str = ALICE) -> str:
    """Ask for a reset link for ``email``; the token of the one mailed."""
    count = received(smtp, email) + 1
    await svc.auth.forgot_password(email, WHO)
    return link_token(await mailed(svc, smtp, email, count), "reset-password")


async def user(svc: Service, name: str = "alice") -> UserRecord:
    return await svc.admin.user(name)


async def audit_details(svc: Service, event: str) -> list[tuple[str, uuid.UUID | None, dict[str, Any] | None]]:
    """The (outcome, user_id, detail) of every audit row of ``event``, oldest first."""
    async with svc.store.read() as tx:
        rows = await tx.audit_events(events=[event], limit=1000)
    return [(r.outcome, r.user_id, r.detail) for r in reversed(rows)]


# --- verification -----------------------------------------------------------------------------


async def test_register_with_email_mails_a_link_that_verifies_the_address(
    svc: Service, smtp: SmtpServer, clock: Clock
) -> None:
    """Sign-up stores the address unverified and mails a verification link (the product's name,
    to the address as typed); the link verifies it, which the caller's account then shows."""
    created = await svc.auth.register("alice", PW, WHO, "Alice@Example.com")
    assert (created.email, created.email_key, created.email_verified_at) == ("Alice@example.com", ALICE, None)
    message = await mailed(svc, smtp, "Alice@example.com")
    assert message["Subject"] == "Verify your email address for keyturn"
    token = link_token(message, "verify-email")
    clock.advance(60)
    verified = await svc.auth.verify_email(token, WHO)
    assert (verified.id, verified.email, verified.email_verified_at) == (created.id, "Alice@example.com", clock())
    caller = await svc.auth.authenticate((await svc.auth.login("alice", PW, WHO)).access_token)
    assert caller.user.email_verified_at == clock()
    assert (await audit_details(svc, "email_verified")) == [("ok", created.id, None)]


async def test_access_tokens_say_whether_the_address_is_verified(svc: Service, smtp: SmtpServer) -> None:
    """``email_verified`` is read in the transaction that issues: false at sign-in before the link
    is used, true from the next refresh (the fast path) after it, false again after a new address."""
    token = await registered(svc, smtp)

    async def says(access_token: str) -> bool | None:
        return (await svc.ctx.verify_access(access_token, svc.ctx.clock())).email_verified

    pair = await svc.auth.login("alice", PW, WHO)
    assert await says(pair.access_token) is False
    await svc.auth.verify_email(token, WHO)
    pair = await svc.auth.refresh(pair.refresh_token, WHO)
    assert await says(pair.access_token) is True
    assert await says((await svc.auth.login("alice", PW, WHO)).access_token) is True
    await svc.auth.set_email("alice", "alice@example.org")
    assert await says((await svc.auth.refresh(pair.refresh_token, WHO)).access_token) is False


async def test_a_verification_link_works_once(svc: Service, smtp: SmtpServer) -> None:
    """Used twice: the second use is refused as a link (invalid_grant, link_refused)."""
    token = await registered(svc, smtp)
    await svc.auth.verify_email(token, WHO)
    await refused_link(svc.auth.verify_email(token, WHO))


@pytest.mark.parametrize("token", ["", "kt_et_" + "A" * 43, "not a token", None, 42, ["kt_et_x"]])
async def test_an_unknown_or_malformed_verification_link_is_refused(svc: Service, token: object) -> None:
    """Anything that is not a link this service mailed gets the same refusal (never a crash)."""
    await refused_link(svc.auth.verify_email(token, WHO))


async def test_a_verification_link_expires_after_email_token_ttl(svc: Service, smtp: SmtpServer, clock: Clock) -> None:
    """At KEYTURN_EMAIL_TOKEN_TTL after it was mailed the link is refused (a second before, it works)."""
    ttl = svc.settings.email_token_ttl.total_seconds()
    early = await registered(svc, smtp, "bob", "bob@example.com")
    late = await registered(svc, smtp)
    clock.advance(ttl - 1)
    await svc.auth.verify_email(early, WHO)
    clock.advance(1)
    await refused_link(svc.auth.verify_email(late, WHO))
    assert (await user(svc)).email_verified_at is None


async def test_a_verification_link_stops_when_the_address_changes(svc: Service, smtp: SmtpServer) -> None:
    """After the operator gives the account another address, the link mailed to the old one is
    refused; the link mailed to the new one verifies the new one."""
    old = await registered(svc, smtp)
    await svc.auth.set_email("alice", "alice@example.org")
    new = link_token(await mailed(svc, smtp, "alice@example.org"), "verify-email")
    await refused_link(svc.auth.verify_email(old, WHO))
    assert (await svc.auth.verify_email(new, WHO)).email == "alice@example.org"


async def test_a_verification_link_is_bound_to_its_address_even_when_not_retired(
    svc: Service, smtp: SmtpServer
) -> None:
    """An address changed behind the service's back (no links retired) still stops the old link:
    the link names the address it was sent to, and nothing is verified."""
    token = await registered(svc, smtp)
    alice = await user(svc)
    async with svc.store.write() as tx:
        assert await tx.set_email(alice.id, "alice@example.org", "alice@example.org")
    await refused_link(svc.auth.verify_email(token, WHO))
    assert (await user(svc)).email_verified_at is None


async def test_resend_mails_a_new_link_and_the_old_one_stops(svc: Service, smtp: SmtpServer) -> None:
    """Resend (in any case of the address) mails a fresh link; the previous one no longer works."""
    first = await registered(svc, smtp)
    await svc.auth.resend_verification("ALICE@example.COM", WHO)
    second = link_token(await mailed(svc, smtp, ALICE, count=2), "verify-email")
    assert second != first
    await refused_link(svc.auth.verify_email(first, WHO))
    await svc.auth.verify_email(second, WHO)


async def test_resend_mails_only_an_enabled_unverified_account(svc: Service, smtp: SmtpServer) -> None:
    """Verified, disabled and unknown addresses get the same (silent) answer and no mail: each
    request is audited alike (no account named), and no link is made when the sender takes it up."""
    await svc.auth.verify_email(await registered(svc, smtp, "vera", "vera@example.com"), WHO)
    await registered(svc, smtp, "dora", "dora@example.com")
    await svc.admin.disable_user("dora")
    before = await delivered(svc, smtp)
    links = len(await audit_details(svc, "verify_link_sent"))
    for address in ("vera@example.com", "dora@example.com", "nobody@example.com"):
        await svc.auth.resend_verification(address, WHO)  # no exception, nothing said
    assert await delivered(svc, smtp) == before
    assert [(o, u) for o, u, _ in await audit_details(svc, "verification_requested")] == [("ok", None)] * 3
    assert len(await audit_details(svc, "verify_link_sent")) == links


async def test_resend_refuses_what_is_not_an_address(svc: Service) -> None:
    """A malformed address is invalid_request (bad_email), for everyone alike."""
    with pytest.raises(InvalidRequest) as caught:
        await svc.auth.resend_verification("not an address", WHO)
    assert caught.value.reason == "bad_email"


# --- registering a taken address --------------------------------------------------------------


async def test_register_with_a_taken_address_answers_the_same_and_mails_the_owner(
    svc: Service, smtp: SmtpServer, clock: Clock
) -> None:
    """A second sign-up with the address (any case) gets a record shaped like a real one, stores
    nothing, mails the address's owner "address in use" (and no link to the caller), and is
    audited as refused for email_taken."""
    await registered(svc, smtp)
    fresh = await svc.auth.register("carol", PW, WHO, "carol@example.com")
    taken = await svc.auth.register("bob", PW, WHO, "ALICE@EXAMPLE.COM")
    assert type(taken) is type(fresh)
    assert (taken.username, taken.email, taken.email_key) == ("bob", "ALICE@example.com", ALICE)
    assert (taken.created_at, taken.email_verified_at, taken.disabled_at, taken.roles) == (
        fresh.created_at, None, None, fresh.roles,
    )  # fmt: skip
    assert taken.id not in {fresh.id, (await user(svc)).id}
    with pytest.raises(NotFound):
        await svc.admin.user("bob")
    assert sorted(u.username for u in await svc.admin.users()) == ["alice", "carol"]
    notice = await mailed(svc, smtp, ALICE, count=2)
    assert notice["Subject"] == "Your keyturn account"
    assert "already has one" in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert [to for to, _ in await delivered(svc, smtp)] == [ALICE, "carol@example.com", ALICE]
    assert (await audit_details(svc, "register"))[-1] == ("refused", None, {"reason": "email_taken"})


async def test_a_taken_username_is_still_username_taken(svc: Service, smtp: SmtpServer) -> None:
    """Names are public (they sign in with them): a taken name is said, whatever the address."""
    await registered(svc, smtp)
    for address in ("other@example.com", ALICE):
        with pytest.raises(UsernameTaken):
            await svc.auth.register("ALICE", PW, WHO, address)


# --- forgot password ----------------------------------------------------------------------------


async def test_forgot_password_answers_the_same_and_mails_only_a_known_enabled_account(
    svc: Service, smtp: SmtpServer
) -> None:
    """Known, unknown, disabled and no-address accounts: the same None, no exception, the same
    audit row (no account named); one reset mail, to the known enabled account (verified or not),
    whose link is audited when the sender makes it."""
    await registered(svc, smtp)
    await registered(svc, smtp, "dora", "dora@example.com")
    await svc.admin.disable_user("dora")
    await svc.auth.create_user("nomail", PW, WHO)
    before = await delivered(svc, smtp)
    for address in ("Alice@Example.com", "nobody@example.com", "dora@example.com"):
        await svc.auth.forgot_password(address, WHO)  # no exception, nothing said
    assert await delivered(svc, smtp) == [*before, (ALICE, "Choose a new password for keyturn")]
    alice = await user(svc)
    assert [(o, u) for o, u, _ in await audit_details(svc, "password_reset_requested")] == [("ok", None)] * 3
    assert [u for _, u, _ in await audit_details(svc, "reset_link_sent")] == [alice.id]


async def test_forgot_password_without_mail_is_unavailable(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """With no mail configured (production, no KEYTURN_MAIL_URL) every address gets Unavailable."""
    plain = await started(database_url, clock, fast_passwords)
    try:
        await plain.auth.create_user("alice", PW, WHO, ALICE)
        for address in (ALICE, "nobody@example.com"):
            with pytest.raises(Unavailable):
                await plain.auth.forgot_password(address, WHO)
    finally:
        await plain.close()


# --- reset password -----------------------------------------------------------------------------


async def test_reset_password_ends_every_session_and_sets_the_new_password(
    svc: Service, smtp: SmtpServer, clock: Clock
) -> None:
    """The link sets the new password, ends every session (refused at authenticate, refresh refused,
    each published on the revocation feed), marks the address verified, and is audited."""
    await registered(svc, smtp)
    pairs = [await svc.auth.login("alice", PW, WHO) for _ in range(2)]
    token = await reset_link(svc, smtp)
    clock.advance(30)
    assert await svc.auth.reset_password(token, NEW, WHO) == 2
    for pair in pairs:
        with pytest.raises(SessionEnded) as caught:
            await svc.auth.authenticate(pair.access_token)
        assert caught.value.reason == "session_ended"
        with pytest.raises(SessionRevoked):
            await svc.auth.refresh(pair.refresh_token, WHO)
    page = await svc.feed.page()
    assert sorted((e.sid, e.reason) for e in page.entries) == sorted((p.session_id, "password_reset") for p in pairs)
    alice = await user(svc)
    assert alice.email_verified_at == clock()
    with pytest.raises(InvalidCredentials):
        await svc.auth.login("alice", PW, WHO)
    await svc.auth.login("alice", NEW, WHO)
    assert (await audit_details(svc, "password_reset")) == [("ok", alice.id, {"sessions_ended": 2})]


async def test_a_reset_link_works_once(svc: Service, smtp: SmtpServer) -> None:
    """The second use of a reset link is refused and changes nothing."""
    await registered(svc, smtp)
    token = await reset_link(svc, smtp)
    assert await svc.auth.reset_password(token, NEW, WHO) == 0
    await refused_link(svc.auth.reset_password(token, OTHER, WHO))
    await svc.auth.login("alice", NEW, WHO)


async def test_a_weak_password_is_refused_and_the_link_still_works(svc: Service, smtp: SmtpServer) -> None:
    """The registration policy applies; a refused password does not use up the link."""
    await registered(svc, smtp)
    session = await svc.auth.login("alice", PW, WHO)
    token = await reset_link(svc, smtp)
    for weak, reason in (("short", "password_too_short"), ("password123", "password_common")):
        with pytest.raises(PasswordPolicyError) as caught:
            await svc.auth.reset_password(token, weak, WHO)
        assert caught.value.reason == reason
    await svc.auth.authenticate(session.access_token)  # nothing ended yet
    assert await svc.auth.reset_password(token, NEW, WHO) == 1


async def test_a_reset_link_expires_after_reset_token_ttl(svc: Service, smtp: SmtpServer, clock: Clock) -> None:
    """At KEYTURN_RESET_TOKEN_TTL after it was mailed the link is refused; the old password stays."""
    await registered(svc, smtp)
    token = await reset_link(svc, smtp)
    clock.advance(svc.settings.reset_token_ttl.total_seconds())
    await refused_link(svc.auth.reset_password(token, NEW, WHO))
    await svc.auth.login("alice", PW, WHO)


async def test_a_second_request_makes_the_first_link_stop(svc: Service, smtp: SmtpServer) -> None:
    """Only the newest reset link works."""
    await registered(svc, smtp)
    first = await reset_link(svc, smtp)
    second = await reset_link(svc, smtp)
    await refused_link(svc.auth.reset_password(first, NEW, WHO))
    await svc.auth.reset_password(second, NEW, WHO)


async def test_a_verification_link_is_no_reset_link(svc: Service, smtp: SmtpServer) -> None:
    """Each link works only for what it was mailed for, both ways."""
    verify = await registered(svc, smtp)
    reset = await reset_link(svc, smtp)
    await refused_link(svc.auth.reset_password(verify, NEW, WHO))
    await refused_link(svc.auth.verify_email(reset, WHO))
    await svc.auth.verify_email(verify, WHO)
    await svc.auth.reset_password(reset, NEW, WHO)


async def test_a_reset_link_is_refused_once_the_account_is_disabled_or_its_address_changed(
    svc: Service, smtp: SmtpServer
) -> None:
    """A disabled account cannot be taken back by its reset link; nor can an account whose address
    changed after the link was mailed (even behind the service's back, no link retired)."""
    await registered(svc, smtp)
    await registered(svc, smtp, "bob", "bob@example.com")
    alices, bobs = await reset_link(svc, smtp), await reset_link(svc, smtp, "bob@example.com")
    await svc.admin.disable_user("alice")
    bob = await user(svc, "bob")
    async with svc.store.write() as tx:
        assert await tx.set_email(bob.id, "bob@example.org", "bob@example.org")
    await refused_link(svc.auth.reset_password(alices, NEW, WHO))
    await refused_link(svc.auth.reset_password(bobs, NEW, WHO))
    await svc.auth.login("bob", PW, WHO)


async def test_one_reset_link_used_twice_at_once_succeeds_once(svc: Service, smtp: SmtpServer) -> None:
    """Two resets with the same link at the same time: exactly one sets its password; the other is
    refused as a link, and its password does not work."""
    await registered(svc, smtp)
    token = await reset_link(svc, smtp)
    results = await asyncio.gather(
        svc.auth.reset_password(token, NEW, WHO), svc.auth.reset_password(token, OTHER, WHO), return_exceptions=True
    )
    winners = [i for i, r in enumerate(results) if r == 0]
    assert len(winners) == 1
    loser = results[1 - winners[0]]
    assert isinstance(loser, InvalidGrant)
    assert loser.reason == "link_refused"
    await svc.auth.login("alice", (NEW, OTHER)[winners[0]], WHO)
    with pytest.raises(InvalidCredentials):
        await svc.auth.login("alice", (NEW, OTHER)[1 - winners[0]], WHO)
    assert len(await audit_details(svc, "password_reset")) == 1


# --- KEYTURN_REQUIRE_VERIFIED_EMAIL -------------------------------------------------------------


async def test_require_verified_email(
    database_url: str, clock: Clock, fast_passwords: Passwords, smtp: SmtpServer
) -> None:
    """Sign-up needs an address (email_required); an unverified account's right password is
    EmailNotVerified, a wrong one InvalidCredentials (nothing said about the address), each
    audited as a failed sign-in; once the link is used, sign-in works."""
    strict = await started(database_url, clock, fast_passwords, mail_url=smtp.url, require_verified_email=True)
    try:
        with pytest.raises(InvalidRequest) as caught:
            await strict.auth.register("bob", PW, WHO)
        assert caught.value.reason == "email_required"
        token = await registered(strict, smtp)
        with pytest.raises(EmailNotVerified) as unverified:
            await strict.auth.login("alice", PW, WHO)
        assert unverified.value.reason == "email_not_verified"
        with pytest.raises(InvalidCredentials):
            await strict.auth.login("alice", "a wrong password", WHO)
        await strict.auth.verify_email(token, WHO)
        await strict.auth.login("alice", PW, WHO)
        alice = (await user(strict)).id
        assert [(outcome, who, detail) for outcome, who, detail in await audit_details(strict, "login")] == [
            ("failed", alice, {"reason": "email_not_verified"}),
            ("failed", alice, None),
            ("ok", alice, None),
        ]
    finally:
        await strict.close()


async def test_unverified_accounts_sign_in_when_not_required(svc: Service, smtp: SmtpServer) -> None:
    """By default (KEYTURN_REQUIRE_VERIFIED_EMAIL off) an unverified address does not stop sign-in."""
    await registered(svc, smtp)
    await svc.auth.login("alice", PW, WHO)


# --- the operator's tools -----------------------------------------------------------------------


async def test_operator_set_email(svc: Service, smtp: SmtpServer) -> None:
    """set_email gives an address (unverified, a link mailed to it, older links retired); a taken
    one is InvalidRequest email_taken; None removes it; an unknown user is NotFound."""
    await registered(svc, smtp)
    await svc.auth.create_user("bob", PW, WHO)
    reset = await reset_link(svc, smtp)
    changed = await svc.auth.set_email("bob", "Bob@Example.org")
    assert (changed.email, changed.email_key, changed.email_verified_at) == ("Bob@example.org", "bob@example.org", None)
    token = link_token(await mailed(svc, smtp, "Bob@example.org"), "verify-email")
    with pytest.raises(InvalidRequest) as caught:
        await svc.auth.set_email("bob", "ALICE@example.com")
    assert caught.value.reason == "email_taken"
    assert (await user(svc, "bob")).email == "Bob@example.org"
    await svc.auth.verify_email(token, WHO)
    await svc.auth.set_email("alice", "alice@example.net")
    await refused_link(svc.auth.reset_password(reset, NEW, WHO))
    assert (await svc.auth.set_email("alice", None)).email is None
    await svc.auth.create_user("carol", PW, WHO, ALICE)  # the old address is free again
    with pytest.raises(NotFound):
        await svc.auth.set_email("nobody", "nobody@example.com")
    assert [o for o, _, _ in await audit_details(svc, "email_set")] == ["ok"] * 3


async def test_without_mail_nothing_waits_in_the_outbox(
    database_url: str, clock: Clock, fast_passwords: Passwords
) -> None:
    """With mail off, an account created with an address and an address set by the operator leave
    the addresses unverified and no message in the outbox (one would never be sent, nor pruned); a
    resend is refused as unavailable for every address alike."""
    plain = await started(database_url, clock, fast_passwords)
    try:
        await plain.auth.create_user("alice", PW, WHO, ALICE)
        await plain.auth.create_user("bob", PW, WHO)
        assert (await plain.auth.set_email("bob", "bob@example.com")).email_verified_at is None
        for address in (ALICE, "bob@example.com", "nobody@example.com"):
            with pytest.raises(Unavailable) as refused:
                await plain.auth.resend_verification(address, WHO)
            assert refused.value.reason == "mail_off"
        async with plain.store.read() as tx:
            assert await tx.outbox_waiting() == 0
    finally:
        await plain.close()


async def test_operator_set_password_ends_every_session(svc: Service, smtp: SmtpServer) -> None:
    """set_password applies the policy, replaces the password, ends every session (the count is
    returned), retires a pending reset link, and is audited."""
    await registered(svc, smtp)
    pairs = [await svc.auth.login("alice", PW, WHO) for _ in range(3)]
    reset = await reset_link(svc, smtp)
    with pytest.raises(PasswordPolicyError):
        await svc.auth.set_password("alice", "short")
    assert await svc.auth.set_password("alice", NEW) == 3
    for pair in pairs:
        with pytest.raises(SessionEnded):
            await svc.auth.authenticate(pair.access_token)
    with pytest.raises(InvalidCredentials):
        await svc.auth.login("alice", PW, WHO)
    await svc.auth.login("alice", NEW, WHO)
    await refused_link(svc.auth.reset_password(reset, OTHER, WHO))
    alice = await user(svc)
    assert (await audit_details(svc, "password_set")) == [("ok", alice.id, {"sessions_ended": 3})]
    with pytest.raises(NotFound):
        await svc.auth.set_password("nobody", NEW)


async def test_operator_enable_user(svc: Service) -> None:
    """enable_user lets a disabled account sign in again (True once, then False); its ended
    sessions stay ended; an unknown user is NotFound."""
    await svc.auth.create_user("alice", PW, WHO)
    old = await svc.auth.login("alice", PW, WHO)
    await svc.admin.disable_user("alice")
    assert await svc.auth.enable_user("ALICE") is True
    assert await svc.auth.enable_user("alice") is False
    await svc.auth.login("alice", PW, WHO)
    with pytest.raises(SessionEnded):
        await svc.auth.authenticate(old.access_token)
    assert [o for o, _, _ in await audit_details(svc, "user_enabled")] == ["ok"]
    with pytest.raises(NotFound):
        await svc.auth.enable_user("nobody")

"""Integration tests of `keyturn users|keys|sessions|token`, in-process, on a real SQLite file in a temp directory."""

from __future__ import annotations

import json
import re

import pytest

from keyturn.core.errors import InvalidCredentials, SessionEnded
from keyturn.server.service import Client, Service, TokenPair, UserRecord
from tests.server.cli.runner import PASSWORD, Cli, user_id, with_service
from tests.smtp import SmtpServer, link_token, smtp_fixture


def test_users_add_list_disable(run: Cli) -> None:
    """An operator creates, lists and disables an account; disabling ends its sessions."""
    assert "created alice" in run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n")
    listed = run("users", "list")
    assert "alice" in listed
    assert "active" in listed
    assert "disabled alice" in run("users", "disable", "alice")
    assert "disabled" in run("users", "list")


def test_users_grant_and_revoke_a_role(run: Cli) -> None:
    """The admin role is granted and revoked by the operator, shown by `users list`, audited; an
    unknown role or user is one clear line."""
    run("users", "add", "root", "--password-stdin", input=PASSWORD + "\n")
    assert "granted admin to root" in run("users", "grant", "root", "admin")
    assert "root already has admin" in run("users", "grant", "root", "admin")
    assert re.search(r"root\s+active\s+roles admin", run("users", "list"))
    assert "revoked admin from root" in run("users", "revoke", "root", "admin")
    assert re.search(r"root\s+active\s+roles -", run("users", "list"))
    assert "unknown role 'owner'" in run("users", "grant", "root", "owner", code=2)
    assert "No user named 'nobody'" in run("users", "grant", "nobody", "admin", code=1)
    events = run("audit", "--event", "role_granted", "--event", "role_revoked", "--json")
    assert [json.loads(line)["event"] for line in events.splitlines()] == ["role_revoked", "role_granted"]


def test_users_add_refuses_a_short_password(run: Cli) -> None:
    """The password policy applies to the CLI too, with one clear line and exit 1."""
    out = run("users", "add", "bob", "--password-stdin", input="short\n", code=1)
    assert "at least 8" in out


def test_keys_list_and_rotate(run: Cli) -> None:
    """A rotated key is published at once and signs after the delay; with no delay it signs now."""
    first = run("keys", "list")
    assert first.count("signing") == 1
    out = run("keys", "rotate", "--delay", "0")
    new_kid = re.search(r"new key (\S+)", out)
    assert new_kid
    listed = run("keys", "list")
    signing = [line for line in listed.splitlines() if "signing" in line]
    assert len(signing) == 1
    assert signing[0].startswith(new_kid.group(1))
    assert "published" in listed


def test_keys_rotate_with_delay_keeps_the_old_signer(run: Cli) -> None:
    """With a delay, the old key keeps signing while the new one is only published."""
    old = run("keys", "list").split()[0]
    run("keys", "rotate", "--delay", "10m")
    signing = [line for line in run("keys", "list").splitlines() if "signing" in line]
    assert signing[0].startswith(old)


def test_keys_rotate_with_a_bad_delay_is_one_line_and_exit_2(run: Cli) -> None:
    """A --delay that is not a duration stops before anything is rotated: one line naming it (it was a traceback)."""
    assert run("keys", "rotate", "--delay", "soon", code=2).splitlines() == [
        "keyturn: --delay: 'soon' is not a duration; use seconds or a unit: 30s, 15m, 1h, 7d"
    ]
    assert run("keys", "list").count("published") == 0


def test_token_inspect_valid_and_invalid(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`token inspect` decodes and verifies against the deployment's keys."""
    run("users", "add", "carol", "--password-stdin", input=PASSWORD + "\n")
    pair = with_service(run, monkeypatch, lambda svc: svc.auth.login("carol", PASSWORD, Client()))
    token = pair.access_token
    out = run("token", "inspect", token)
    assert out.splitlines()[-2:] == ["VALID", "SESSION: live"]
    assert '"typ": "at+jwt"' in out
    bad = run("token", "inspect", token[:-4] + "AAAA", code=1)
    assert "INVALID: bad_signature" in bad
    assert bad.splitlines()[-1] == "SESSION: live"  # the session is read from the claims, untrusted


def test_token_inspect_reports_an_ended_session_and_exits_1(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token whose signature is good but whose session was signed out is VALID with SESSION:
    ended (why and when), exit 1: resource servers following the feed refuse it."""
    run("users", "add", "dave", "--password-stdin", input=PASSWORD + "\n")

    async def sign_in_and_out(svc: Service) -> str:
        pair = await svc.auth.login("dave", PASSWORD, Client())
        await svc.auth.logout(None, pair.refresh_token, Client())
        return pair.access_token

    token = with_service(run, monkeypatch, sign_in_and_out)
    lines = run("token", "inspect", token, code=1).splitlines()
    assert lines[-2] == "VALID"
    assert lines[-1].startswith("SESSION: ended: logout at 20")
    assert run("token", "inspect", "e30.e30.c2ln", code=1).splitlines()[-1] == "SESSION: unknown"


def test_sessions_list_and_revoke(run: Cli) -> None:
    """Sessions show up in the listing and can be revoked by id; an unknown id is one clear error."""
    assert run("sessions", "list") == ""
    out = run("sessions", "revoke", "00000000-0000-0000-0000-000000000000", code=1)
    assert "No live session" in out


# --- email and recovery (issue 17) --------------------------------------------------------------

NEW = "a whole new passphrase"


smtp = smtp_fixture()


def test_users_add_with_an_email_mails_a_link_that_verifies_it(
    run: Cli, monkeypatch: pytest.MonkeyPatch, smtp: SmtpServer
) -> None:
    """`users add --email` stores the address unverified; with KEYTURN_MAIL_URL set the link waits in
    the outbox, a server's sender mails it, and it verifies the account the CLI created."""
    run.env["KEYTURN_MAIL_URL"] = smtp.url
    uid = user_id(
        run("users", "add", "alice", "--email", "Alice@Example.com", "--password-stdin", input=PASSWORD + "\n")
    )
    assert smtp.messages == []  # the CLI only posts; sending is the server's work

    async def deliver_and_verify(svc: Service) -> UserRecord:
        assert (await svc.admin.user("alice")).email_verified_at is None
        await svc.postman.deliver_due()
        token = link_token(smtp.wait_for("Alice@example.com", timeout=5), "verify-email")
        return await svc.auth.verify_email(token, Client())

    verified = with_service(run, monkeypatch, deliver_and_verify)
    assert (str(verified.id), verified.email) == (uid, "Alice@example.com")
    assert verified.email_verified_at is not None


def test_users_add_with_a_taken_or_bad_email_is_one_line_and_exit_1(run: Cli) -> None:
    """The operator is told what sign-up never says: the address belongs to another account (any
    case); nothing is created. A malformed address is one line too."""
    run("users", "add", "alice", "--email", "alice@example.com", "--password-stdin", input=PASSWORD + "\n")
    taken = run(
        "users", "add", "bob", "--email", "ALICE@example.com", "--password-stdin", input=PASSWORD + "\n", code=1
    )
    assert taken.splitlines() == ["keyturn: Another account has that email address."]
    bad = run("users", "add", "carol", "--email", "not an address", "--password-stdin", input=PASSWORD + "\n", code=1)
    assert bad.splitlines() == ["keyturn: The email address must look like name@example.com."]
    assert [line.split()[1] for line in run("users", "list").splitlines()] == ["alice"]


def test_users_set_email(run: Cli) -> None:
    """set-email gives an account an address (unverified), audited; an address another account has,
    a malformed one, or an unknown user is one line and exit 1."""
    for name in ("alice", "bob"):
        run("users", "add", name, "--password-stdin", input=PASSWORD + "\n")
    assert run("users", "set-email", "alice", "Alice@Example.com").splitlines() == [
        "alice has the address Alice@example.com (unverified)"
    ]
    assert run("users", "set-email", "bob", "alice@EXAMPLE.com", code=1).splitlines() == [
        "keyturn: Another account has that email address."
    ]
    assert run("users", "set-email", "bob", "bob@", code=1).splitlines() == [
        "keyturn: The email address must look like name@example.com."
    ]
    assert run("users", "set-email", "nobody", "n@example.com", code=1).splitlines() == [
        "keyturn: No user named 'nobody'."
    ]
    assert "bob has the address bob@example.com" in run("users", "set-email", "bob", "bob@example.com")
    events = run("audit", "--event", "email_set", "--json").splitlines()
    assert [json.loads(line)["outcome"] for line in events] == ["ok", "ok"]


def test_users_set_password_ends_every_session(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """set-password --password-stdin replaces the password and ends every session (the count is
    said); the old password is refused, the new one works; the policy applies; audited."""
    run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n")

    async def sign_in_twice(svc: Service) -> list[TokenPair]:
        return [await svc.auth.login("alice", PASSWORD, Client()) for _ in range(2)]

    pairs = with_service(run, monkeypatch, sign_in_twice)
    out = run("users", "set-password", "alice", "--password-stdin", input=NEW + "\n")
    assert out.splitlines() == ["password of alice set; ended 2 session(s)"]
    assert NEW not in out

    async def after(svc: Service) -> None:
        for pair in pairs:
            with pytest.raises(SessionEnded):
                await svc.auth.authenticate(pair.access_token)
        with pytest.raises(InvalidCredentials):
            await svc.auth.login("alice", PASSWORD, Client())
        await svc.auth.login("alice", NEW, Client())

    with_service(run, monkeypatch, after)
    assert "at least 8" in run("users", "set-password", "alice", "--password-stdin", input="short\n", code=1)
    assert "No user named 'nobody'" in run(
        "users", "set-password", "nobody", "--password-stdin", input=NEW + "\n", code=1
    )
    events = run("audit", "--event", "password_set", "--json").splitlines()
    assert [json.loads(line)["detail"] for line in events] == [{"sessions_ended": 2}]


def test_users_enable(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """enable lets a disabled account sign in again and says so; enabling an enabled account says it
    was not disabled; an unknown user is one line and exit 1."""
    run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n")
    run("users", "disable", "alice")
    assert run("users", "enable", "alice").splitlines() == ["enabled alice"]
    assert run("users", "enable", "alice").splitlines() == ["alice was not disabled"]
    assert "active" in run("users", "list")
    with_service(run, monkeypatch, lambda svc: svc.auth.login("alice", PASSWORD, Client()))
    assert run("users", "enable", "nobody", code=1).splitlines() == ["keyturn: No user named 'nobody'."]
    events = run("audit", "--event", "user_enabled", "--json").splitlines()
    assert len(events) == 1

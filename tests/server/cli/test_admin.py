"""Integration tests of `keyturn users|keys|sessions|token`, in-process, on a real SQLite file in a temp directory."""

from __future__ import annotations

import json
import re

import pytest

from keyturn.server.service import Client, Service
from tests.server.cli.runner import PASSWORD, Cli, with_service


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

"""Integration tests of `keyturn audit`, in-process, on a real SQLite file in a temp directory."""

from __future__ import annotations

import json
import re

import pytest

from keyturn.core.errors import InvalidCredentials
from keyturn.server.service import Client, Service
from tests.server.cli.runner import PASSWORD, UUID, Cli, user_id, with_service


def test_audit_lists_events_newest_first_in_aligned_columns(run: Cli) -> None:
    """`audit` prints one aligned line per event, newest first, with `-` for missing values."""
    alice = user_id(run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n"))
    bob = user_id(run("users", "add", "bob", "--password-stdin", input=PASSWORD + "\n"))
    run("users", "disable", "alice")
    lines = run("audit").splitlines()
    assert len(lines) == 3
    time = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
    assert re.fullmatch(
        rf'{time}  user_disabled    ok       user {alice}  session -{" " * 35}  -  "keyturn-cli"  ended=0', lines[0]
    )
    assert re.fullmatch(
        rf'{time}  register         ok       user {bob}  session -{" " * 35}  -  "keyturn-cli"', lines[1]
    )
    assert f"user {alice}" in lines[2]
    assert len({line.index(" user ") for line in lines}) == 1
    assert len({line.index("  -  ") for line in lines}) == 1


def test_audit_json_lines_carry_every_field(run: Cli) -> None:
    """`--json` prints one JSON object per line with string UUIDs and a UTC `Z` time."""
    alice = user_id(run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n"))
    run("users", "disable", "alice")
    rows = [json.loads(line) for line in run("audit", "--json").splitlines()]
    assert [r["event"] for r in rows] == ["user_disabled", "register"]
    assert set(rows[0]) == {"id", "at", "event", "outcome", "user_id", "session_id", "ip", "user_agent", "detail"}
    assert rows[0]["user_id"] == alice
    assert rows[0]["detail"] == {"ended": 0}
    assert rows[0]["session_id"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", rows[0]["at"])
    assert rows[0]["id"] > rows[1]["id"]


def test_audit_filters_by_event_user_and_time(run: Cli) -> None:
    """`--event` (repeatable), `--user`, `--since` and `--until` narrow the listing."""
    alice = user_id(run("users", "add", "alice", "--password-stdin", input=PASSWORD + "\n"))
    run("users", "add", "bob", "--password-stdin", input=PASSWORD + "\n")
    run("users", "disable", "alice")
    registered = run("audit", "--event", "register").splitlines()
    assert len(registered) == 2
    assert all(" register " in line for line in registered)
    assert len(run("audit", "--event", "register", "--event", "user_disabled").splitlines()) == 3
    mine = run("audit", "--user", "alice").splitlines()
    assert len(mine) == 2
    assert all(f"user {alice}" in line for line in mine)
    assert len(run("audit", "--since", "1h").splitlines()) == 3
    assert len(run("audit", "--since", "2000-01-01T00:00:00", "--limit", "2").splitlines()) == 2
    assert run("audit", "--until", "1h") == ""
    assert run("audit", "--since", "2999-01-01T00:00:00+02:00") == ""


def test_audit_shows_logins_with_client_details_and_no_secrets(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logins show IP and quoted user agent; a hostile agent is escaped and cut; no token or password leaks."""
    run("users", "add", "carol", "--password-stdin", input=PASSWORD + "\n")
    hostile = "\x1b[31mEvil\x1b[0m " + "x" * 100

    async def traffic(svc: Service) -> list[str]:
        pair = await svc.auth.login("carol", PASSWORD, Client(ip="203.0.113.7", user_agent="pytest"))
        with pytest.raises(InvalidCredentials):
            await svc.auth.login("carol", "wrong password!", Client(ip="2001:db8::1", user_agent=hostile))
        return [pair.access_token, pair.refresh_token]

    secrets_seen = with_service(run, monkeypatch, traffic)
    lines = run("audit", "--event", "login").splitlines()
    assert len(lines) == 2
    cut = "x" * 23  # 37 characters of the agent, then "..."
    assert lines[0].endswith(f'2001:db8::1  "\\u001b[31mEvil\\u001b[0m {cut}..."')
    assert re.search(rf' login            ok       user {UUID}  session {UUID}  203.0.113.7  "pytest"$', lines[1])
    assert "\x1b" not in run("audit")
    everything = run("audit") + run("audit", "--json")
    for value in [*secrets_seen, PASSWORD, "wrong password!"]:
        assert value not in everything


def test_audit_bad_since_is_one_line_and_exit_2(run: Cli) -> None:
    """A `--since` that is neither a time nor a duration stops with exit 2 and one line naming it."""
    out = run("audit", "--since", "yesterday", code=2)
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == 1
    assert lines[0].startswith("keyturn: --since 'yesterday' is not an ISO 8601 time or a duration")


def test_audit_unknown_user_is_one_clear_error(run: Cli) -> None:
    """`--user` with an unknown name exits 1 with one line, not an empty listing."""
    out = run("audit", "--user", "nobody", code=1)
    assert out.strip() == "keyturn: No user named 'nobody'."

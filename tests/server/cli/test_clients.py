"""Integration tests of `keyturn clients add|list|rotate-secret|disable|enable`, in-process, on a
real SQLite file in a temp directory: the secret is printed once, alone on the last line of
stdout, and is the one that authenticates; refusals are one line and exit 1, never a traceback."""

from __future__ import annotations

import re

import pytest
from click.testing import Result

from keyturn.core.clients import SECRET_BASIC, SECRET_POST, Presented
from keyturn.core.errors import InvalidClient
from keyturn.server.cli import app
from keyturn.server.service import ClientRecord, Service
from tests.server.cli.runner import Cli, with_service

SECRET = re.compile(r"kt_cs_[A-Za-z0-9_-]{43}")


def invoke(run: Cli, *args: str, code: int = 0) -> Result:
    """The command's result, with stdout and stderr apart (``Cli`` returns them together)."""
    result = run.runner.invoke(app, list(args), env=run.env)
    assert result.exit_code == code, (result.output, result.exception)
    return result


def secret_of(result: Result) -> str:
    """The secret: the whole last line of stdout."""
    last = result.stdout.splitlines()[-1]
    assert SECRET.fullmatch(last), result.stdout
    return last


def authenticate(
    run: Cli, monkeypatch: pytest.MonkeyPatch, client_id: str, secret: str, method: str = SECRET_BASIC
) -> ClientRecord | str:
    """The client the service authenticates with this secret, or the reason it refuses."""

    async def work(svc: Service) -> ClientRecord | str:
        try:
            found = await svc.clients.authenticate(Presented(client_id, secret, method))
        except InvalidClient as exc:
            return exc.reason
        assert found is not None
        return found

    return with_service(run, monkeypatch, work)


def listed(run: Cli) -> dict[str, str]:
    """`clients list`, each line by its client id."""
    return {line.split()[0]: line for line in run("clients", "list").splitlines()}


def test_add_prints_the_secret_alone_on_the_last_line_and_it_authenticates(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stdout is "created ID (method)" then the secret; the note about it goes to stderr; the
    printed secret is the client's, by its method."""
    result = invoke(run, "clients", "add", "billing", "--scope", "invoices:read")
    assert result.stdout.splitlines()[0] == "created billing (client_secret_basic)"
    assert len(result.stdout.splitlines()) == 2
    assert "shown once" in result.stderr
    assert not SECRET.search(result.stderr)
    found = authenticate(run, monkeypatch, "billing", secret_of(result))
    assert isinstance(found, ClientRecord)
    assert (found.client_id, found.scope) == ("billing", "invoices:read")


def test_add_keeps_every_option_and_list_shows_them(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """--name, --scope, --audience, --auth-method client_secret_post and --no-grant are registered;
    the listing shows each client on one line, by id, with its state, method, grants and scope."""
    result = invoke(
        run, "clients", "add", "reports", "--name", "Reporting", "--scope", "reports:read reports:read",
        "--audience", "https://a.test", "--auth-method", SECRET_POST, "--no-grant",
    )  # fmt: skip
    assert result.stdout.splitlines()[0] == "created reports (client_secret_post)"
    invoke(run, "clients", "add", "billing")
    lines = listed(run)
    assert list(lines) == ["billing", "reports"]
    assert re.match(r"reports\s+active\s+client_secret_post\s+grants none\s+scope reports:read\s", lines["reports"])
    assert "https://a.test" in lines["reports"]
    assert re.match(r"billing\s+active\s+client_secret_basic\s+grants client_credentials\s+scope -", lines["billing"])
    assert authenticate(run, monkeypatch, "reports", secret_of(result)) == "wrong_method"
    found = authenticate(run, monkeypatch, "reports", secret_of(result), SECRET_POST)
    assert isinstance(found, ClientRecord)
    assert (found.name, found.grant_types) == ("Reporting", "")


def test_list_is_empty_without_clients(run: Cli) -> None:
    """The first-party public client is built in, not listed."""
    assert run("clients", "list") == ""


def test_rotate_secret_prints_a_new_secret_and_the_old_one_stops(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new secret is the last line of stdout; it authenticates, the old one is bad_credentials."""
    old = secret_of(invoke(run, "clients", "add", "billing"))
    result = invoke(run, "clients", "rotate-secret", "billing")
    assert result.stdout.splitlines()[0] == "new secret for billing (client_secret_basic)"
    new = secret_of(result)
    assert new != old
    assert authenticate(run, monkeypatch, "billing", old) == "bad_credentials"
    assert isinstance(authenticate(run, monkeypatch, "billing", new), ClientRecord)


def test_disable_and_enable(run: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disabled client is listed disabled and refused client_disabled; enabled again, it
    authenticates with the same secret."""
    secret = secret_of(invoke(run, "clients", "add", "billing"))
    assert run("clients", "disable", "billing") == "disabled billing; its access tokens are ended\n"
    assert re.match(r"billing\s+disabled\s", listed(run)["billing"])
    assert authenticate(run, monkeypatch, "billing", secret) == "client_disabled"
    assert run("clients", "enable", "billing") == "enabled billing\n"
    assert re.match(r"billing\s+active\s", listed(run)["billing"])
    assert isinstance(authenticate(run, monkeypatch, "billing", secret), ClientRecord)


@pytest.mark.parametrize(
    ("client_id", "message"),
    [
        (
            "Billing",
            "a client id is 3 to 64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit.",
        ),
        ("123e4567-e89b-12d3-a456-426614174000", "a client id may not be a UUID (users' subjects are UUIDs)."),
        ("keyturn", "'keyturn' is the first-party client (KEYTURN_CLIENT_ID)."),
    ],
    ids=["capital", "uuid", "first-party"],
)
def test_a_bad_client_id_is_one_line_and_exit_1(run: Cli, client_id: str, message: str) -> None:
    """The refusal is the one line `keyturn: <why>` on stderr, nothing on stdout, no traceback,
    and nothing registered."""
    result = invoke(run, "clients", "add", client_id, code=1)
    assert result.stderr.splitlines() == [f"keyturn: {message}"]
    assert result.stdout == ""
    assert run("clients", "list") == ""


def test_a_bad_scope_or_a_taken_id_is_one_line_and_exit_1(run: Cli) -> None:
    """A scope that is not an RFC 6749 scope token, a second client of one id: one line each."""
    assert invoke(run, "clients", "add", "billing", "--scope", 'a"b', code=1).stderr.splitlines() == [
        "keyturn: 'a\"b' is not a scope name (RFC 6749 §3.3)."
    ]
    invoke(run, "clients", "add", "billing")
    assert invoke(run, "clients", "add", "billing", code=1).stderr.splitlines() == [
        "keyturn: A client named 'billing' exists."
    ]


def test_an_unknown_auth_method_is_a_usage_error(run: Cli) -> None:
    """--auth-method is a choice of the two secret methods: exit 2 naming them, nothing registered."""
    out = run("clients", "add", "billing", "--auth-method", "none", code=2)
    assert "client_secret_basic" in out
    assert "Traceback" not in out
    assert run("clients", "list") == ""


@pytest.mark.parametrize("command", ["rotate-secret", "disable", "enable"])
def test_an_unknown_client_is_one_line_and_exit_1(run: Cli, command: str) -> None:
    """`No client named 'nobody'.` on stderr, exit 1, no traceback."""
    result = invoke(run, "clients", command, "nobody", code=1)
    assert result.stderr.splitlines() == ["keyturn: No client named 'nobody'."]
    assert result.stdout == ""

"""Operating a deployment's accounts, signing keys, sessions and tokens: ``users``, ``keys``,
``sessions`` and ``token``."""

from __future__ import annotations

import json
import sys

import click

from ...core.errors import InvalidRequest, NotFound
from ...core.roles import ROLES, parse_roles
from ..config import parse_duration
from ..service import Client, Service, UserRecord
from ._invocation import Commands, fail, run, settings, when

_ROLES = ", ".join(sorted(ROLES))


@click.group(cls=Commands)
def users() -> None:
    """Manage accounts."""


@users.command("add")
@click.argument("username")
@click.option("--email", metavar="ADDRESS", help="The account's email address (a verification link is mailed).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def users_add(username: str, email: str | None, password_stdin: bool) -> None:
    """Create the account USERNAME.

    Works whatever KEYTURN_ALLOW_REGISTRATION says: the operator can always add an account.
    """
    config = settings()  # a missing setting is said before the password is asked for, not after
    password = _password(password_stdin)
    user = run(lambda svc: _create(svc, username, password, email), config)
    click.echo(f"created {user.username} ({user.id})")


async def _create(svc: Service, username: str, password: str, email: str | None) -> UserRecord:
    """Create the account. Sign-up answers an address another account has as if it were free (so it
    never tells whether an address is registered); the operator is told instead."""
    user = await svc.auth.create_user(username, password, Client(user_agent="keyturn-cli"), email)
    try:
        stored = await svc.admin.user(user.username)
    except NotFound:
        stored = None
    if stored is None or stored.id != user.id:
        raise InvalidRequest("Another account has that email address.", reason="email_taken")
    return user


@users.command("set-email")
@click.argument("username")
@click.argument("address")
def users_set_email(username: str, address: str) -> None:
    """Give USERNAME an email address.

    The address is unverified until the link mailed to it is opened; older links stop working.
    """
    user = run(lambda svc: svc.auth.set_email(username, address))
    click.echo(f"{user.username} has the address {user.email} (unverified)")


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def users_set_password(username: str, password_stdin: bool) -> None:
    """Set USERNAME's password and end all its sessions.

    For an account whose owner cannot reset it by email. Every device is signed out.
    """
    config = settings()
    password = _password(password_stdin)
    ended = run(lambda svc: svc.auth.set_password(username, password), config)
    click.echo(f"password of {username} set; ended {ended} session(s)")


@users.command("enable")
@click.argument("username")
def users_enable(username: str) -> None:
    """Enable the disabled account USERNAME again."""
    changed = run(lambda svc: svc.auth.enable_user(username))
    click.echo(f"enabled {username}" if changed else f"{username} was not disabled")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@users.command("list")
def users_list() -> None:
    """List accounts."""
    for u in run(lambda svc: svc.admin.users()):
        state = "disabled" if u.disabled_at else "active"
        roles = ",".join(sorted(parse_roles(u.roles))) or "-"
        click.echo(f"{u.id}  {u.username:<24} {state:<8} roles {roles:<8} created {when(u.created_at)}")


@users.command(
    "grant",
    help=f"Give USERNAME the role ROLE (one of: {_ROLES}). "
    "An admin reads the audit log and rotates signing keys over HTTP.",
)
@click.argument("username")
@click.argument("role")
def users_grant(username: str, role: str) -> None:
    _change_role(username, role, grant=True)


@users.command(
    "revoke",
    help=f"Take the role ROLE (one of: {_ROLES}) from USERNAME. "
    "The admin API refuses them at once; their tokens lose the role at the next refresh.",
)
@click.argument("username")
@click.argument("role")
def users_revoke(username: str, role: str) -> None:
    _change_role(username, role, grant=False)


def _change_role(username: str, role: str, *, grant: bool) -> None:
    if role not in ROLES:
        fail(f"unknown role {role!r}; roles: {_ROLES}", code=2)
    if run(lambda svc: (svc.admin.grant_role if grant else svc.admin.revoke_role)(username, role)):
        click.echo(f"granted {role} to {username}" if grant else f"revoked {role} from {username}")
    else:
        click.echo(f"{username} already has {role}" if grant else f"{username} does not have {role}")


@users.command("disable")
@click.argument("username")
def users_disable(username: str) -> None:
    """Disable the account USERNAME and end all its sessions."""
    ended = run(lambda svc: svc.admin.disable_user(username))
    click.echo(f"disabled {username}; ended {ended} session(s)")


@click.group(cls=Commands)
def keys() -> None:
    """Manage signing keys."""


@keys.command("list")
def keys_list() -> None:
    """List signing keys and their state."""
    for k in run(lambda svc: svc.admin.keys()):
        state = "signing" if k.signing else "published" if k.published else "retired"
        click.echo(f"{k.kid}  {k.alg:<6} {state:<9} created {when(k.created_at)} active {when(k.activates_at)}")


@keys.command("rotate")
@click.option(
    "--delay",
    metavar="DURATION",
    help="Publish now, sign after this long (e.g. 10m; default KEYTURN_KEY_PUBLISH_DELAY).",
)
def keys_rotate(delay: str | None) -> None:
    """Publish a new signing key; it takes over signing after the delay."""
    try:
        wait = parse_duration(delay) if delay is not None else None
    except ValueError as exc:
        fail(f"--delay: {exc}", code=2)
    key = run(lambda svc: svc.admin.rotate_key(wait))
    click.echo(f"new key {key.kid} ({key.alg}) published; signs from {when(key.activates_at)}")


@click.group(cls=Commands)
def sessions() -> None:
    """Inspect and end sessions."""


@sessions.command("list")
@click.option("--user", metavar="NAME", help="Only this user's sessions.")
def sessions_list(user: str | None) -> None:
    """List live sessions."""
    for s in run(lambda svc: svc.admin.sessions(user)):
        click.echo(f"{s.id}  user {s.user_id}  gen {s.generation:<5} last used {when(s.last_used_at)}  {s.ip}")


@sessions.command("revoke")
@click.argument("session_id", metavar="SESSION_ID")
def sessions_revoke(session_id: str) -> None:
    """End the session SESSION_ID."""
    run(lambda svc: svc.admin.revoke_session(session_id))
    click.echo(f"revoked {session_id}")


@click.group(cls=Commands)
def token() -> None:
    """Look at tokens."""


@token.command("inspect")
@click.argument("value", metavar="TOKEN")
def token_inspect(value: str) -> None:
    """Verify the access token TOKEN; report how its session stands.

    Prints its decoded header and claims; then VALID, or INVALID with the reason; then SESSION: live,
    ended (why and when), expired (idle or absolute) or unknown. Exit 1 unless the token is valid
    and its session live (what every resource server following the revocation feed accepts). A
    TOKEN of - reads the token from stdin, which keeps it out of the shell's history.
    """
    raw = sys.stdin.readline().strip() if value == "-" else value.strip()
    report = run(lambda svc: svc.admin.inspect(raw))
    click.echo(json.dumps({"header": report.header, "claims": report.claims}, indent=2, sort_keys=True))
    if report.error is not None:
        click.echo(f"INVALID: {report.error.reason}: {report.error.description}")
    else:
        click.echo("VALID")
    click.echo(f"SESSION: {report.session}")
    if not report.usable:
        raise click.exceptions.Exit(1)

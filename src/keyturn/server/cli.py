"""The ``keyturn`` command: serve, migrate, and operate users, keys, sessions, tokens and the audit log."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer

from ..core.errors import ConfigurationError, KeyturnError
from ..core.roles import ROLES, parse_roles
from .config import Settings, load_settings, parse_duration
from .logs import configure_logging
from .service import Client, Service, run_with
from .service.admin import MAX_AUDIT_LIMIT
from .store import AuditRecord

T = TypeVar("T")
# Text printed as is; anything else (spaces, quotes, control characters) is printed JSON-quoted.
_BARE = re.compile(r"[\w.:%@/+-]+", re.ASCII)
app = typer.Typer(help="keyturn: token authentication service.", no_args_is_help=True, add_completion=False)
users = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys = typer.Typer(help="Manage signing keys.", no_args_is_help=True)
sessions = typer.Typer(help="Inspect and end sessions.", no_args_is_help=True)
token = typer.Typer(help="Look at tokens.", no_args_is_help=True)
for sub, name in ((users, "users"), (keys, "keys"), (sessions, "sessions"), (token, "token")):
    app.add_typer(sub, name=name)


@dataclass
class _State:
    dev: bool = False


_state = _State()


@app.callback()
def main(
    dev: Annotated[bool, typer.Option("--dev", help="Development mode: generated secret, relaxed checks.")] = False,
) -> None:
    """Settings come from KEYTURN_* environment variables (see docs/configuration.md)."""
    _state.dev = dev


def _settings(dev_issuer: str | None = None) -> Settings:
    try:
        return load_settings(dev=_state.dev, dev_issuer=dev_issuer)
    except ConfigurationError as exc:
        typer.echo(f"keyturn: invalid setting {exc.description}", err=True)
        raise typer.Exit(2) from None


def _run(work: Callable[[Service], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run one operation against the configured store, turning keyturn errors into one line."""

    settings = settings or _settings()
    try:
        return asyncio.run(run_with(settings, work))
    except KeyturnError as exc:
        typer.echo(f"keyturn: {exc.description}", err=True)
        raise typer.Exit(1) from None


def _env_choice(name: str, default: str) -> str:
    value = os.environ.get(f"KEYTURN_{name}", default).lower()
    allowed = {"LOG_LEVEL": ("debug", "info", "warning", "error"), "LOG_FORMAT": ("text", "json")}[name]
    return value if value in allowed else default


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Apply migrations and serve the HTTP API."""
    import uvicorn

    from .http import create_app
    from .http.protocol import http_protocol

    # Log in the requested format from the first line on (settings may log while loading).
    configure_logging(_env_choice("LOG_LEVEL", "info"), _env_choice("LOG_FORMAT", "text"))
    settings = _settings(dev_issuer=_dev_issuer(host, port))
    configure_logging(settings.log_level, settings.log_format)
    # Migrate and make the first key once, before the workers race; a database that cannot be used
    # stops here with one line (inside uvicorn's lifespan it would be a traceback).
    _run(lambda svc: svc.start(), settings)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "proxy_headers": False,
        "http": http_protocol(settings),  # httptools with the request head bounded (431 beyond it)
        "server_header": False,
        "log_level": settings.log_level,
        "log_config": None,  # keep ours: same format for uvicorn's lines
        # SIGTERM: stop accepting, let in-flight requests finish (bounded), then close the pool.
        "timeout_graceful_shutdown": 30,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **common)
        return
    assert settings.secret is not None
    # What --dev derived (the secret, the issuer) reaches the workers, which read the environment.
    os.environ.update(
        KEYTURN_ENV=settings.env, KEYTURN_SECRET=settings.secret.get_secret_value(), KEYTURN_ISSUER=settings.issuer
    )
    uvicorn.run("keyturn.server.http:create_app_from_env", factory=True, workers=workers, **common)


def _dev_issuer(host: str, port: int) -> str:
    """Development mode's issuer: the address ``serve`` listens on, as a client on this machine
    reaches it (``0.0.0.0`` and ``::`` mean every address, so 127.0.0.1)."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@app.command()
def migrate() -> None:
    """Apply database migrations up to the newest."""
    settings = _settings()

    async def go() -> None:
        svc = Service(settings)
        try:
            await svc.store.db.check()
            await svc.store.db.migrate()
        finally:
            await svc.close()

    try:
        asyncio.run(go())
    except KeyturnError as exc:
        typer.echo(f"keyturn: {exc.description}", err=True)
        raise typer.Exit(1) from None
    typer.echo("migrations applied")


@app.command()
def prune() -> None:
    """Delete sessions dead for longer than KEYTURN_SESSION_RETENTION and audit rows older than
    KEYTURN_AUDIT_RETENTION, in batches (safe while servers run, and on several hosts at once)."""
    result = _run(lambda svc: svc.maintenance.prune())
    typer.echo(f"pruned {result.sessions} sessions and {result.audit_events} audit rows")


@app.command()
def secret() -> None:
    """Print a new random master secret for KEYTURN_SECRET."""
    typer.echo(secrets.token_urlsafe(48))


@users.command("add")
def users_add(
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Create an account (works whatever KEYTURN_ALLOW_REGISTRATION says)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _run(lambda svc: svc.auth.create_user(username, password, Client(user_agent="keyturn-cli")))
    typer.echo(f"created {user.username} ({user.id})")


@users.command("list")
def users_list() -> None:
    """List accounts."""
    for u in _run(lambda svc: svc.admin.users()):
        state = "disabled" if u.disabled_at else "active"
        roles = ",".join(sorted(parse_roles(u.roles))) or "-"
        typer.echo(f"{u.id}  {u.username:<24} {state:<8} roles {roles:<8} created {_when(u.created_at)}")


Role = Annotated[str, typer.Argument(help=f"One of: {', '.join(sorted(ROLES))}.")]


@users.command("grant")
def users_grant(username: str, role: Role) -> None:
    """Give a user a role (admin: the audit log and key rotation over HTTP)."""
    _change_role(username, role, grant=True)


@users.command("revoke")
def users_revoke(username: str, role: Role) -> None:
    """Take a role from a user: refused at once by the admin API, gone from tokens at the next refresh."""
    _change_role(username, role, grant=False)


def _change_role(username: str, role: str, *, grant: bool) -> None:
    if role not in ROLES:
        typer.echo(f"keyturn: unknown role {role!r}; roles: {', '.join(sorted(ROLES))}", err=True)
        raise typer.Exit(2)
    if _run(lambda svc: (svc.admin.grant_role if grant else svc.admin.revoke_role)(username, role)):
        typer.echo(f"granted {role} to {username}" if grant else f"revoked {role} from {username}")
    else:
        typer.echo(f"{username} already has {role}" if grant else f"{username} does not have {role}")


@users.command("disable")
def users_disable(username: str) -> None:
    """Disable an account and end all its sessions."""
    ended = _run(lambda svc: svc.admin.disable_user(username))
    typer.echo(f"disabled {username}; ended {ended} session(s)")


@keys.command("list")
def keys_list() -> None:
    """List signing keys and their state."""
    for k in _run(lambda svc: svc.admin.keys()):
        state = "signing" if k.signing else "published" if k.published else "retired"
        typer.echo(f"{k.kid}  {k.alg:<6} {state:<9} created {_when(k.created_at)} active {_when(k.activates_at)}")


@keys.command("rotate")
def keys_rotate(
    delay: Annotated[str | None, typer.Option(help="Publish now, sign after this delay (default setting).")] = None,
) -> None:
    """Publish a new signing key; it takes over signing after the delay."""
    wait = parse_duration(delay) if delay is not None else None
    key = _run(lambda svc: svc.admin.rotate_key(wait))
    typer.echo(f"new key {key.kid} ({key.alg}) published; signs from {_when(key.activates_at)}")


@sessions.command("list")
def sessions_list(user: Annotated[str | None, typer.Option(help="Only this user's sessions.")] = None) -> None:
    """List live sessions."""
    for s in _run(lambda svc: svc.admin.sessions(user)):
        typer.echo(f"{s.id}  user {s.user_id}  gen {s.generation:<5} last used {_when(s.last_used_at)}  {s.ip}")


@sessions.command("revoke")
def sessions_revoke(session_id: str) -> None:
    """End one session."""
    _run(lambda svc: svc.admin.revoke_session(session_id))
    typer.echo(f"revoked {session_id}")


@token.command("inspect")
def token_inspect(value: Annotated[str, typer.Argument(help="The access token, or - to read stdin.")]) -> None:
    """Decode an access token and verify it against this deployment's keys."""
    raw = sys.stdin.readline().strip() if value == "-" else value.strip()
    report = _run(lambda svc: svc.admin.inspect(raw))
    typer.echo(json.dumps({"header": report.header, "claims": report.claims}, indent=2, sort_keys=True))
    if report.error is not None:
        typer.echo(f"INVALID: {report.error.reason}: {report.error.description}")
        raise typer.Exit(1)
    typer.echo("VALID")


@app.command()
def audit(
    user: Annotated[str | None, typer.Option(metavar="NAME", help="Only this user's events.")] = None,
    event: Annotated[
        list[str] | None,
        typer.Option(metavar="EVENT", help="Only this event, e.g. login, refresh, reuse_detected (repeatable)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="WHEN", help="From this time: ISO 8601 (naive means UTC) or that long ago: 15m, 2h, 7d."),
    ] = None,
    until: Annotated[str | None, typer.Option(metavar="WHEN", help="Before this time; same forms as --since.")] = None,
    limit: Annotated[int, typer.Option(metavar="N", min=1, max=MAX_AUDIT_LIMIT, help="At most this many events.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line (JSON Lines).")] = False,
) -> None:
    """Show the audit log, newest first."""
    now = datetime.now(UTC)
    start, end = _parse_when("--since", since, now), _parse_when("--until", until, now)
    records = _run(lambda svc: svc.admin.audit(user, event or (), start, end, limit))
    if as_json:
        for r in records:
            typer.echo(_audit_json(r))
        return
    ip_width = max((len(_text(r.ip)) for r in records), default=1)
    for r in records:
        typer.echo(_audit_line(r, ip_width))


def _parse_when(option: str, value: str | None, now: datetime) -> datetime | None:
    """An ISO 8601 time (naive means UTC), or a duration meaning that long before ``now``."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.strip())
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    try:
        return now - parse_duration(value)
    except ValueError:
        typer.echo(f"keyturn: {option} {value!r} is not an ISO 8601 time or a duration such as 15m, 2h or 7d", err=True)
        raise typer.Exit(2) from None


def _audit_line(r: AuditRecord, ip_width: int) -> str:
    user_id, session_id = _text(r.user_id), _text(r.session_id)
    ua = r.user_agent
    agent = "-" if ua is None else json.dumps(ua if len(ua) <= 40 else ua[:37] + "...")
    detail = " ".join(f"{_text(k)}={_text(v)}" for k, v in (r.detail or {}).items())
    line = f"{_when(r.at)}  {r.event:<16} {r.outcome:<8} user {user_id:<36}  session {session_id:<36}  "
    return f"{line}{_text(r.ip):<{ip_width}}  {agent}  {detail}".rstrip()


def _text(value: object) -> str:
    """One display token: ``-`` for nothing, bare when harmless, else JSON-quoted (no spaces, no control characters)."""
    if value is None:
        return "-"
    if isinstance(value, dict | list | bool):
        return json.dumps(value, separators=(",", ":"))
    text = str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text)


def _audit_json(r: AuditRecord) -> str:
    return json.dumps(
        {
            "id": r.id,
            "at": r.at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "event": r.event,
            "outcome": r.outcome,
            "user_id": None if r.user_id is None else str(r.user_id),
            "session_id": None if r.session_id is None else str(r.session_id),
            "ip": r.ip,
            "user_agent": r.user_agent,
            "detail": r.detail,
        }
    )


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at else "-"

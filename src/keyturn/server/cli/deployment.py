"""Running a deployment: ``serve``, ``migrate``, ``prune`` and ``secret``."""

from __future__ import annotations

import os
import secrets
from typing import Any

import click

from ..config import Settings
from ..logs import configure_logging
from ..service import Service
from ._invocation import run, run_service, settings


@click.command()
@click.option("--host", metavar="HOST", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", metavar="PORT", type=int, default=8000, show_default=True, help="Port to bind.")
@click.option(
    "--workers", metavar="N", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes."
)
def serve(host: str, port: int, workers: int) -> None:
    """Apply migrations and serve the HTTP API."""
    import uvicorn

    from ..http import create_app
    from ..http.protocol import http_protocol

    # Log in the requested format from the first line on (settings may log while loading).
    configure_logging(_env_choice("LOG_LEVEL", "info"), _env_choice("LOG_FORMAT", "text"))
    config = settings(dev_issuer=_dev_issuer(host, port))
    configure_logging(config.log_level, config.log_format)
    # Migrate and make the first key once, before the workers race; a database that cannot be used
    # stops here with one line (inside uvicorn's lifespan it would be a traceback).
    run(_started, config)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "proxy_headers": False,
        "http": http_protocol(config),  # httptools with the request head bounded (431 beyond it)
        "server_header": False,
        "log_level": config.log_level,
        "log_config": None,  # keep ours: same format for uvicorn's lines
        # SIGTERM: stop accepting, let in-flight requests finish (bounded), then close the pool.
        "timeout_graceful_shutdown": 30,
    }
    if workers == 1:
        uvicorn.run(create_app(config), **common)
        return
    assert config.secret is not None
    # What --dev derived (the secret, the issuer) reaches the workers, which read the environment.
    os.environ.update(
        KEYTURN_ENV=config.env, KEYTURN_SECRET=config.secret.get_secret_value(), KEYTURN_ISSUER=config.issuer
    )
    uvicorn.run("keyturn.server.http:create_app_from_env", factory=True, workers=workers, **common)


async def _started(_svc: Service) -> None:
    """Nothing more to do: starting the service has migrated (if enabled) and made the first key."""


def _env_choice(name: str, default: str) -> str:
    value = os.environ.get(f"KEYTURN_{name}", default).lower()
    allowed = {"LOG_LEVEL": ("debug", "info", "warning", "error"), "LOG_FORMAT": ("text", "json")}[name]
    return value if value in allowed else default


def _dev_issuer(host: str, port: int) -> str:
    """Development mode's issuer: the address ``serve`` listens on, as a client on this machine
    reaches it (``0.0.0.0`` and ``::`` mean every address, so 127.0.0.1)."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@click.command()
def migrate() -> None:
    """Apply database migrations up to the newest."""
    run_service(_migrate(settings()))
    click.echo("migrations applied")


async def _migrate(config: Settings) -> None:
    """Only migrate, not the rest of start-up: no signing key is made, whatever KEYTURN_AUTO_MIGRATE says."""
    svc = Service(config)
    try:
        await svc.migrate()
    finally:
        await svc.close()


@click.command()
def prune() -> None:
    """Delete long-dead sessions and old audit rows.

    Sessions dead for longer than KEYTURN_SESSION_RETENTION and audit rows older than
    KEYTURN_AUDIT_RETENTION go, in batches: safe while servers run, and on several hosts at once.
    """
    result = run(lambda svc: svc.maintenance.prune())
    click.echo(
        f"pruned {result.sessions} sessions, {result.audit_events} audit rows, {result.mail} sent mails, "
        f"{result.email_links} email links "
        f"and {result.revocations} revocation-feed entries"
    )


@click.command()
def secret() -> None:
    """Print a new random master secret for KEYTURN_SECRET."""
    click.echo(secrets.token_urlsafe(48))

"""Operating the OAuth client registry: ``keyturn clients add|list|rotate-secret|disable|enable``.

A secret is printed once, on its own line, when it is made (``add``, ``rotate-secret``); keyturn
keeps only its MAC, so a lost secret is replaced, never shown again.
"""

from __future__ import annotations

import click

from ...core.clients import AUTH_METHODS
from ..service import CLIENT_GRANTS, ClientRecord, Registered
from ._invocation import Commands, run, when

__all__ = ["clients"]


@click.group(cls=Commands)
def clients() -> None:
    """Manage OAuth clients: machines and resource servers.

    A machine gets tokens with client_credentials; a resource server may introspect them.
    """


@clients.command("add")
@click.argument("client_id")
@click.option("--name", default="", help="A display name (default: CLIENT_ID).")
@click.option("--scope", default="", help="The scopes the client may have, space-separated.")
@click.option("--audience", default="", help="Its tokens' aud, space-separated (default: KEYTURN_AUDIENCE).")
@click.option(
    "--auth-method",
    type=click.Choice(AUTH_METHODS),
    default=AUTH_METHODS[0],
    show_default=True,
    metavar="METHOD",
    help="How the client sends its secret: client_secret_basic or client_secret_post.",
)
@click.option(
    "--no-grant",
    is_flag=True,
    help=f"No grant ({', '.join(CLIENT_GRANTS)} otherwise): a resource server that only introspects tokens.",
)
def clients_add(client_id: str, name: str, scope: str, audience: str, auth_method: str, no_grant: bool) -> None:
    """Register a client and print its secret.

    Registers the confidential client CLIENT_ID and prints its secret on the last line; the secret
    is shown this once (keyturn keeps only a MAC of it).
    """
    grants = () if no_grant else CLIENT_GRANTS
    made = run(
        lambda svc: svc.clients.add(
            client_id, name=name, scope=scope, audience=audience, auth_method=auth_method, grant_types=grants
        )
    )
    _secret(made, "created")


@clients.command("list")
def clients_list() -> None:
    """List the registered clients.

    The first-party public client (KEYTURN_CLIENT_ID) is built in and not listed.
    """
    for c in run(lambda svc: svc.clients.registered()):
        click.echo(_line(c))


@clients.command("rotate-secret")
@click.argument("client_id")
def clients_rotate_secret(client_id: str) -> None:
    """Give a client a new secret.

    Prints CLIENT_ID's new secret on the last line; the old one stops working at once. Tokens
    already issued stay valid until they expire: disable the client to end them.
    """
    _secret(run(lambda svc: svc.clients.rotate_secret(client_id)), "new secret for")


@clients.command("disable")
@click.argument("client_id")
def clients_disable(client_id: str) -> None:
    """Disable a client and end its tokens.

    CLIENT_ID gets no more tokens, and the access tokens it holds are refused at once (by every
    API following the revocation feed, and at introspection).
    """
    run(lambda svc: svc.clients.disable(client_id))
    click.echo(f"disabled {client_id}; its access tokens are ended")


@clients.command("enable")
@click.argument("client_id")
def clients_enable(client_id: str) -> None:
    """Enable a disabled client again.

    The tokens CLIENT_ID held stay ended.
    """
    run(lambda svc: svc.clients.enable(client_id))
    click.echo(f"enabled {client_id}")


def _line(c: ClientRecord) -> str:
    state = "disabled" if c.disabled_at else "active"
    grants = c.grant_types or "none"
    return (
        f"{c.client_id:<24} {state:<8} {c.auth_method:<19} grants {grants:<18} scope {c.scope or '-'}"
        f"  aud {c.audience or '(KEYTURN_AUDIENCE)'}  created {when(c.created_at)}"
    )


def _secret(made: Registered, verb: str) -> None:
    click.echo(f"{verb} {made.client.client_id} ({made.client.auth_method})")
    click.echo("client secret (shown once; keyturn keeps only its MAC):", err=True)
    click.echo(made.secret)

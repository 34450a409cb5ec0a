"""The ``keyturn`` command: serve, migrate, and operate users, keys, sessions, tokens and the audit log.

Plain Click: its help is what an operator expects (``Usage: keyturn users add [OPTIONS] USERNAME``),
and it rewraps each paragraph of a docstring to the terminal. One module per concern
(``deployment``, ``admin``, ``clients``, ``audit``), each talking to the service's public API only
(``keyturn.server.service``); what they share (the settings, one run of the service, one-line
failures) is in ``_invocation``.
"""

from __future__ import annotations

import click

from . import admin, audit, clients, deployment
from ._invocation import Commands, Invocation

__all__ = ["app"]


@click.group("keyturn", cls=Commands)
@click.option(
    "--dev", is_flag=True, help="Development mode: a generated secret, relaxed checks. Goes before the command."
)
@click.pass_context
def app(ctx: click.Context, dev: bool) -> None:
    """keyturn: token authentication service.

    Settings come from KEYTURN_* environment variables (see docs/configuration.md).
    """
    ctx.obj = Invocation(dev=dev)


for command in (deployment.serve, deployment.migrate, deployment.prune, deployment.secret, audit.audit):
    app.add_command(command)
for group in (admin.users, admin.keys, admin.sessions, admin.token, clients.clients):
    app.add_command(group)

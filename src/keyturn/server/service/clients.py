"""The OAuth client registry, as the operator manages it (``keyturn clients``, the admin API), and
client authentication as the OAuth endpoints need it. The rules are the core's
(``keyturn.core.clients``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from ...core import clients as rules
from ...core.clients import AUTH_METHODS, CLIENT_CREDENTIALS, NONE, Presented, new_secret
from ...core.errors import InvalidClient, InvalidRequest, NotFound
from ...core.roles import ROLE_SCOPES
from ..store import ClientRecord
from .admin import still_admin
from .context import Client, Context

__all__ = ["CLIENT_GRANTS", "Clients", "Registered"]

CLIENT_GRANTS = (CLIENT_CREDENTIALS,)
"""The grants a registered client may be given (none: a resource server that only introspects)."""
_OPERATOR = Client(user_agent="keyturn-cli")


@dataclass(frozen=True, slots=True)
class Registered:
    """A client and its new secret: the only time the secret is seen."""

    client: ClientRecord
    secret: str = field(repr=False)


class Clients:
    """Register, list, rotate, disable and enable confidential clients; authenticate a client."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def add(
        self,
        client_id: str,
        *,
        name: str = "",
        scope: str = "",
        audience: str = "",
        auth_method: str = AUTH_METHODS[0],
        grant_types: tuple[str, ...] = CLIENT_GRANTS,
        who: Client = _OPERATOR,
        by: uuid.UUID | None = None,
    ) -> Registered:
        """Register a confidential client. An empty ``audience`` stands for the deployment's token
        audience (``KEYTURN_AUDIENCE``) as it is when each token is issued.
        ``who`` and ``by``: the request and the admin user asking over HTTP (whose role is checked
        again in the transaction, as in every method here); the CLI passes neither.

        Raises:
            InvalidRequest: a name, scope, method or grant that cannot be registered, or a taken id.
        """
        record = self._record(client_id, name, scope, audience, auth_method, grant_types)
        secret = new_secret()
        record = _with_secret(record, self.ctx.client_secrets.digest(secret))
        async with self.ctx.store.write() as tx:
            await still_admin(tx, by)
            await tx.insert_client(record)
            await self.ctx.audit(tx, record.created_at, "client_added", who, user_id=by, client_id=client_id)
        return Registered(record, secret)

    def _record(
        self, client_id: str, name: str, scope: str, audience: str, auth_method: str, grants: tuple[str, ...]
    ) -> ClientRecord:
        if client_id == self.ctx.settings.client_id:
            raise InvalidRequest(f"{client_id!r} is the first-party client (KEYTURN_CLIENT_ID).", reason="bad_client")
        try:
            rules.check_client_id(client_id)
            scope, audience = rules.scope_list(scope), rules.audience_list(audience)
        except ValueError as exc:
            raise InvalidRequest(f"{exc}.", reason="bad_client") from None
        if auth_method not in AUTH_METHODS:
            raise InvalidRequest(f"auth_method is one of: {', '.join(AUTH_METHODS)}.", reason="bad_client")
        if set(grants) - set(CLIENT_GRANTS):
            raise InvalidRequest(f"grant_types are among: {', '.join(CLIENT_GRANTS)}.", reason="bad_client")
        if len(name) > 128:
            raise InvalidRequest("A client's name is at most 128 characters.", reason="bad_client")
        now = self.ctx.clock()
        return ClientRecord(
            client_id=client_id, name=name or client_id, auth_method=auth_method, secret_mac=None,
            grant_types=" ".join(dict.fromkeys(grants)), scope=scope, audience=audience, grant_id=uuid.uuid4(),
            created_at=now, secret_rotated_at=now,
        )  # fmt: skip

    async def registered(self) -> list[ClientRecord]:
        """Every registered client, by id (the first-party public client is not a row)."""
        async with self.ctx.store.read() as tx:
            return await tx.list_clients()

    async def scopes_supported(self) -> list[str]:
        """Every scope a token of this deployment may carry: the sign-in default, the roles'
        scopes, and the registered clients' (RFC 8414 ``scopes_supported``)."""
        found = [*self.ctx.settings.default_scope.split(), *(s for r in ROLE_SCOPES.values() for s in r)]
        for record in await self.registered():
            found.extend(record.scope.split())
        return sorted(set(found))

    async def get(self, client_id: str) -> ClientRecord:
        """Raises ``NotFound``."""
        async with self.ctx.store.read() as tx:
            return _found(await tx.client(client_id), client_id)

    async def rotate_secret(self, client_id: str, who: Client = _OPERATOR, by: uuid.UUID | None = None) -> Registered:
        """A new secret for the client; the old one stops working at once. Tokens already issued
        stay valid until they expire (disable the client to end them)."""
        secret = new_secret()
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            await still_admin(tx, by)
            record = _found(await tx.lock_client(client_id), client_id)
            mac = self.ctx.client_secrets.digest(secret)
            await tx.set_client_secret(client_id, mac, now)
            await self.ctx.audit(tx, now, "client_secret_rotated", who, user_id=by, client_id=client_id)
        return Registered(replace(record, secret_mac=mac, secret_rotated_at=now), secret)

    async def disable(self, client_id: str, who: Client = _OPERATOR, by: uuid.UUID | None = None) -> ClientRecord:
        """Disable the client: it can no longer authenticate, and every access token it holds is
        ended at once, through the revocation feed (and for introspection)."""
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            await still_admin(tx, by)
            record = _found(await tx.lock_client(client_id), client_id)
            until = self.ctx.tokens_until(now)
            await tx.end_client_grant(record, now, "client_disabled", tokens_until=until, disable=True)
            await self.ctx.audit(
                tx, now, "client_disabled", who, user_id=by, session_id=record.grant_id, client_id=client_id
            )
            return _found(await tx.client(client_id), client_id)

    async def enable(self, client_id: str, who: Client = _OPERATOR, by: uuid.UUID | None = None) -> ClientRecord:
        """Enable a disabled client again (the tokens it held stay ended)."""
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            await still_admin(tx, by)
            _found(await tx.lock_client(client_id), client_id)
            await tx.enable_client(client_id)
            await self.ctx.audit(tx, now, "client_enabled", who, user_id=by, client_id=client_id)
            return _found(await tx.client(client_id), client_id)

    async def authenticate(self, presented: Presented) -> ClientRecord | None:
        """The client a request authenticated as: None for the first-party public client, else an
        enabled registered client whose secret matched, sent by the method it was registered with.

        Raises:
            InvalidClient: with the reason (``unknown_client``, ``bad_credentials``,
                ``wrong_method``, ``client_disabled``, ``public_client``, ``missing_credentials``).
        """
        first_party = self.ctx.settings.client_id
        if presented.method == NONE:
            if presented.client_id in (None, first_party):
                return None
            known = await self._read(presented.client_id)
            if known is None:
                raise InvalidClient("Unknown client.", reason="unknown_client")
            raise InvalidClient("This client must authenticate.", reason="missing_credentials")
        if presented.client_id == first_party:
            raise InvalidClient("The first-party client is public: send no secret.", reason="public_client")
        record = await self._read(presented.client_id)
        stored = None if record is None else record.secret_mac
        if not self.ctx.client_secrets.matches(stored, presented.secret or ""):
            raise InvalidClient("Client authentication failed.", reason="bad_credentials")
        assert record is not None  # a secret matched: the client exists
        if presented.method != record.auth_method:
            raise InvalidClient(f"Authenticate with {record.auth_method}, as registered.", reason="wrong_method")
        if record.disabled_at is not None:
            raise InvalidClient("The client is disabled.", reason="client_disabled")
        return record

    async def _read(self, client_id: str | None) -> ClientRecord | None:
        if not client_id:
            return None
        async with self.ctx.store.read() as tx:
            return await tx.client(client_id)


def _found(record: ClientRecord | None, client_id: str) -> ClientRecord:
    if record is None:
        raise NotFound(f"No client named {client_id[:64]!r}.")
    return record


def _with_secret(record: ClientRecord, mac: str) -> ClientRecord:
    return replace(record, secret_mac=mac)

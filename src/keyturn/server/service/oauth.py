"""The OAuth 2.0 use cases of registered clients: the ``client_credentials`` grant (RFC 6749
§4.4), RFC 7662 introspection and RFC 7009 revocation on behalf of a client.

A machine's access tokens carry its client id as ``sub`` and ``client_id`` (RFC 9068 §2.2), the
client's registered audience as ``aud`` (by default the deployment's), and the client's *grant*
as ``sid``: one id per client, so that disabling the client (or revoking one of its tokens) ends
them all through the revocation feed, exactly as a session's end does. No refresh token is
issued (RFC 6749 §4.4.3): a machine asks again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...core.clients import CLIENT_CREDENTIALS, narrowed
from ...core.errors import InvalidClient, InvalidGrant, InvalidToken, UnauthorizedClient
from ...core.sessions import Action, decide_refresh, whole_seconds_left
from ...core.tokens import MAX_TOKEN_LENGTH, AccessClaims, issue_access_token
from ..store import ClientRecord
from .admin import unverified
from .context import Caller, Client, Context, state_of
from .sessions import SessionUse

__all__ = ["MachineToken", "OAuth"]


@dataclass(frozen=True, slots=True)
class _Live:
    """A live access token: its claims, and its caller (a user's) or its client (a machine's)."""

    claims: AccessClaims
    caller: Caller | None = None
    client: ClientRecord | None = None


@dataclass(frozen=True, slots=True)
class MachineToken:
    """The token response of a ``client_credentials`` grant (RFC 6749 §4.4.3, §5.1)."""

    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret


class OAuth:
    """What a registered client asks of the OAuth endpoints."""

    def __init__(self, ctx: Context, sessions: SessionUse) -> None:
        self.ctx = ctx
        self.sessions = sessions

    async def client_credentials(
        self, client: ClientRecord, scope: tuple[str, ...] | None, who: Client
    ) -> MachineToken:
        """An access token for the client itself: its registered scopes (or the part asked for),
        for its registered audience. The client is read again in the transaction that audits the
        grant, so a client disabled a moment ago gets nothing.

        Raises:
            InvalidClient (disabled), UnauthorizedClient, InvalidScope, Unavailable.
        """
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            record = await tx.client(client.client_id)
            if record is None or record.disabled_at is not None:
                raise InvalidClient("The client is disabled.", reason="client_disabled")
            if CLIENT_CREDENTIALS not in record.grant_types.split():
                raise UnauthorizedClient("This client may not use the client_credentials grant.")
            granted = record.scope if scope is None else narrowed(record.scope, scope)
            await self.ctx.audit(
                tx, now, "client_token", who, session_id=record.grant_id, client_id=record.client_id, scope=granted
            )
        audience = self._audience(record).split()
        ring = await self.ctx.keys.ring(now)
        token, exp = issue_access_token(
            ring.signer(now),
            issuer=self.ctx.settings.issuer,
            audience=audience[0] if len(audience) == 1 else audience,
            subject=record.client_id,
            session_id=str(record.grant_id),
            client_id=record.client_id,
            scope=granted,
            now=now,
            ttl=self.ctx.settings.access_token_ttl,
        )
        return MachineToken(token, whole_seconds_left(datetime.fromtimestamp(exp, UTC), now), granted)

    async def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 §2.2: what an active token is, or ``{"active": false}`` for anything ended,
        expired, unknown, forged or not ours. Read now, from the database: it sees a logout, a
        disabled user or client at once.

        Raises:
            Unavailable: the database cannot be reached.
        """
        if token.count(".") == 2:
            found = await self._live_access(token)
            return {"active": False} if found is None else _access_answer(found)
        return await self._refresh_answer(token)

    async def revoke(self, token: str, hint: str | None, client: ClientRecord | None, who: Client) -> None:
        """RFC 7009 for ``client`` (None: the first-party public client): end the session of a
        refresh or access token issued to it, or every token of the client's grant for one of its
        own access tokens. Anything that is no live token of ours is no error (§2.2).

        Raises:
            InvalidGrant: the token was issued to another client (§2.1), Unavailable.
        """
        owner = self.ctx.settings.client_id if client is None else client.client_id
        if token.count(".") != 2:
            await self.sessions.revoke_token(token, "refresh_token", who, owner=owner)
            return
        found = await self._live_access(token)
        if found is None:
            return
        claims, record = found.claims, found.client
        if claims.client_id != owner:
            raise InvalidGrant("The token was issued to another client.", reason="other_client")
        if found.caller is not None:
            await self.sessions.logout(found.caller, None, who)  # verified above: its session ends
            return
        assert record is not None
        now = self.ctx.clock()
        async with self.ctx.store.write() as tx:
            locked = await tx.lock_client(record.client_id)
            if locked is not None and locked.grant_id == record.grant_id:
                await tx.end_client_grant(locked, now, "client_revoked", tokens_until=self.ctx.tokens_until(now))
                await self.ctx.audit(tx, now, "client_token_revoked", who, session_id=locked.grant_id, client_id=owner)

    async def _live_access(self, token: str) -> _Live | None:
        """A live access token's claims and, for a machine's token, its client; None otherwise."""
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        client_id = unverified(token)[1].get("client_id")
        now = self.ctx.clock()
        if not isinstance(client_id, str) or client_id == self.ctx.settings.client_id:
            try:
                caller = await self.sessions.caller_of(await self.ctx.verify_access(token, now), now)
            except InvalidToken:
                return None
            return _Live(caller.claims, caller=caller)
        async with self.ctx.store.read() as tx:
            record = await tx.client(client_id)
        if record is None or record.disabled_at is not None:
            return None
        try:
            claims = await self.ctx.verifier_for(self._audience(record)).verify_async(token, now=now)
        except InvalidToken:
            return None
        if claims.sid != str(record.grant_id) or claims.sub != record.client_id:
            return None
        return _Live(claims, client=record)

    def _audience(self, client: ClientRecord) -> str:
        """The ``aud`` of the client's tokens: its own, or the deployment's (an empty one)."""
        return client.audience or self.ctx.settings.token_audience

    async def _refresh_answer(self, token: str) -> dict[str, Any]:
        """RFC 7662 for a refresh token: active if refreshing with it now would succeed (the
        current generation, or the previous one inside the grace window). Introspection changes
        nothing: an old token is reported inactive, not treated as reuse."""
        try:
            presented = self.ctx.presented(token)
        except InvalidGrant:
            return {"active": False}
        now = self.ctx.clock()
        async with self.ctx.store.read() as tx:
            found = await tx.session_and_user(presented.session_id)
        if found is None:
            return {"active": False}
        record, user = found
        state = state_of(record, user)
        if decide_refresh(state, presented.generation, now, self.ctx.lifetimes).action not in (
            Action.ROTATE, Action.REPLAY,
        ):  # fmt: skip
            return {"active": False}
        return {
            "active": True, "client_id": record.client_id, "username": user.username, "sub": str(user.id),
            "sid": str(record.id), "scope": record.scope, "iss": self.ctx.settings.issuer,
            "iat": int(record.rotated_at.timestamp()),
            "exp": int(state.expires_at(self.ctx.lifetimes).timestamp()),
        }  # fmt: skip


def _access_answer(found: _Live) -> dict[str, Any]:
    claims = found.claims
    answer: dict[str, Any] = {
        "active": True, "token_type": "Bearer", "scope": " ".join(claims.scope), "client_id": claims.client_id,
        "sub": claims.sub, "aud": list(claims.aud), "iss": claims.iss, "exp": claims.exp, "iat": claims.iat,
        "jti": claims.jti, "sid": claims.sid,
    }  # fmt: skip
    if found.caller is not None:
        answer["username"] = found.caller.user.username
    return answer

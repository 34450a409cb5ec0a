"""The refresh use case: a refresh token in, a rotated session and a new token pair out.

The rule lives in the core (``keyturn.core.sessions``: ``decide_refresh`` and ``SessionBounds``);
this module carries its outcome out, in one transaction and in one place (``_carry_out``). Most
refreshes present the current token of a live session, which the store rotates in one statement
built from the same bounds, with its audit row, as a unit of work of its own (on PostgreSQL one
statement: one round trip); anything else is read and decided.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ...core.clients import narrowed
from ...core.errors import InvalidGrant, Unavailable, UnknownSession
from ...core.refresh import RefreshToken
from ...core.roles import parse_roles, token_scope
from ...core.sessions import Action, Outcome, SessionBounds, decide_refresh
from ..store import SessionRecord, Standing, Tx
from .context import Client, Context, TokenPair, state_of

__all__ = ["Refresh"]

CAS_ATTEMPTS = 3


class _Raced(Exception):
    """Another refresh rotated the session between our read and our compare-and-swap."""


class Refresh:
    """Rotation, grace replay and reuse detection, for ``AuthService``."""

    ctx: Context

    def read_refresh_token(self, token: object) -> RefreshToken:
        """Check a presented refresh token's format and MAC and say which session it names (what
        the edge needs before the use case: a rate-limit key, the session's CSRF token).

        Raises:
            MalformedRefreshToken, ForgedRefreshToken.
        """
        return self.ctx.presented(token)

    async def refresh(
        self,
        refresh_token: RefreshToken | object,
        client: Client,
        *,
        scope: tuple[str, ...] | None = None,
        client_id: str | None = None,
    ) -> TokenPair:
        """Rotate a session: the current token moves it one generation on; the previous one,
        inside the grace window, gets the same refresh token again; anything older revokes the
        session. A revocation and its audit row are committed before the refusal is raised.

        Args:
            refresh_token: as read by ``read_refresh_token`` (the HTTP edge reads it once), or as
                presented.
            scope: the scopes the access token should carry (RFC 6749 §6), each one granted; by
                default every scope granted.
            client_id: the client that presents the token (the OAuth endpoint's), which must be
                the one the session was issued to (RFC 6749 §6); nothing is rotated otherwise.

        Raises:
            InvalidGrant (one of its subclasses; ``other_client``: nothing is rotated), InvalidScope
            (nothing is rotated), Unavailable.
        """
        presented = self.ctx.presented(refresh_token)
        now = self.ctx.clock()
        bounds = SessionBounds.at(now, self.ctx.lifetimes)
        alone = client_id is None and scope is None  # nothing after the rotation can refuse it
        if alone and (rotated := await self._rotate_alone(presented, bounds, client)) is not None:
            record, standing = rotated
            granted = token_scope(record.scope, parse_roles(standing.roles))
            return await self.ctx.issue(record, state_of(record), now, standing, scope=granted)
        for attempt in range(CAS_ATTEMPTS):
            try:
                async with self.ctx.store.write() as tx:
                    fast = attempt == 0 and not alone
                    found = await self._rotate_current(tx, presented, bounds, client) if fast else None
                    if found is None:
                        outcome, found = await self._decide(tx, presented, now, client)
                    else:
                        outcome = Outcome(Action.ROTATE)
                    if client_id is not None and found[0].client_id != client_id:
                        raise InvalidGrant("The refresh token was issued to another client.", reason="other_client")
                    granted = token_scope(found[0].scope, parse_roles(found[1].roles))
                    if outcome.refusal is None and scope is not None:
                        granted = narrowed(granted, scope)  # raises before the rotation commits
            except _Raced:
                continue
            if outcome.refusal is not None:
                raise outcome.refusal
            record, user = found
            return await self.ctx.issue(record, state_of(record), now, user, scope=granted)
        raise Unavailable("The session is being refreshed too often; try again.")

    async def _rotate_current(
        self, tx: Tx, presented: RefreshToken, bounds: SessionBounds, client: Client
    ) -> tuple[SessionRecord, Standing] | None:
        """The fast path: rotate in one statement when the bounds say the token is current and
        the session refreshable; None otherwise."""
        found = await tx.rotate_current(presented.session_id, presented.generation, bounds)
        if found is not None:
            await self._audit_rotation(tx, bounds.now, client, found[0])
        return found

    async def _rotate_alone(
        self, presented: RefreshToken, bounds: SessionBounds, client: Client
    ) -> tuple[SessionRecord, Standing] | None:
        """The fast path, with its audit row, committed on its own (on PostgreSQL one statement:
        one round trip). Only where nothing after the rotation can refuse (no client to match, no
        scope to narrow): such a refusal must roll the rotation back, so it rotates in the
        transaction that decides."""
        audit = self.ctx.audit_record(bounds.now, "refresh", client, generation=presented.generation + 1)
        found = await self.ctx.store.rotate_alone(presented.session_id, presented.generation, bounds, audit)
        if found is None:
            return None
        record, standing, written = found
        if self.ctx.audit_observers:
            self.ctx.observe(written)
        return record, standing

    async def _decide(
        self, tx: Tx, presented: RefreshToken, now: datetime, client: Client
    ) -> tuple[Outcome, tuple[SessionRecord, Standing]]:
        """Read the session and its user, decide, and carry the outcome out."""
        found = await tx.session_and_user(presented.session_id)
        if found is None:
            raise UnknownSession()
        record, user = found
        outcome = decide_refresh(state_of(record, user), presented.generation, now, self.ctx.lifetimes)
        return outcome, (await self._carry_out(tx, outcome, record, now, client), user.standing)

    async def _carry_out(
        self, tx: Tx, outcome: Outcome, record: SessionRecord, now: datetime, client: Client
    ) -> SessionRecord:
        """Write what ``outcome`` means for the session, with its audit row; returns the session
        to issue tokens for (meaningful when the outcome refuses nothing).

        Raises:
            _Raced: the compare-and-swap of a rotation lost (decide again on the new row).
        """
        if outcome.action is Action.ROTATE:
            if not await tx.rotate_session(record.id, record.generation, now):
                raise _Raced()
            record = replace(record, generation=record.generation + 1, rotated_at=now, last_used_at=now)
            await self._audit_rotation(tx, now, client, record)
        elif outcome.action is Action.REPLAY:
            await self.ctx.audit_session(tx, now, "refresh_replay", client, record, generation=record.generation)
        else:
            assert outcome.refusal is not None
            if outcome.end_session is not None:
                await tx.revoke_sessions(
                    record.user_id, now, outcome.end_session, only=record.id, tokens_until=self.ctx.tokens_until(now)
                )
            if outcome.action is Action.REVOKE:
                await self.ctx.audit_session(tx, now, "reuse_detected", client, record, outcome="revoked")
            else:
                reason = outcome.refusal.reason
                await self.ctx.audit_session(tx, now, "refresh", client, record, outcome="refused", reason=reason)
        return record

    async def _audit_rotation(self, tx: Tx, now: datetime, client: Client, record: SessionRecord) -> None:
        """The audit row of a rotation; ``record`` is the session as rotated."""
        await self.ctx.audit_session(tx, now, "refresh", client, record, generation=record.generation)

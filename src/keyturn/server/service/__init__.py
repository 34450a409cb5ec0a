"""The service layer: one use case per method, each in one transaction.

The only layer that joins the pure core to the store, and the only thing the HTTP edge and the
CLI talk to: every type they need is re-exported here, and nothing else of ``service/`` or
``store/`` is theirs to import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from ...core.passwords import Passwords
from ...core.sessions import SessionBounds
from ..config import Settings
from ..store import AuditRecord as AuditRecord
from ..store import ClientRecord as ClientRecord
from ..store import SessionRecord as SessionRecord
from ..store import Store
from ..store import UserRecord as UserRecord
from .admin import MAX_AUDIT_LIMIT as MAX_AUDIT_LIMIT
from .admin import AdminService as AdminService
from .admin import KeyStatus as KeyStatus
from .admin import TokenReport as TokenReport
from .auth import AuthService as AuthService
from .clients import CLIENT_GRANTS as CLIENT_GRANTS
from .clients import Clients as Clients
from .clients import Registered as Registered
from .context import AuditObserver, Clock, utcnow
from .context import Caller as Caller
from .context import Client as Client
from .context import Context as Context
from .context import TokenPair as TokenPair
from .feed import MAX_WAIT as MAX_WAIT
from .feed import Feed as Feed
from .maintenance import Maintenance as Maintenance
from .maintenance import PruneResult as PruneResult
from .oauth import MachineToken as MachineToken
from .oauth import OAuth as OAuth

__all__ = [
    "CLIENT_GRANTS", "MAX_AUDIT_LIMIT", "MAX_WAIT", "AdminService", "AuditRecord", "AuthService", "Caller", "Client",
    "ClientRecord", "Clients", "Context", "Feed", "KeyStatus", "MachineToken", "Maintenance", "OAuth", "PruneResult",
    "Registered", "Service", "SessionRecord", "TokenPair", "TokenReport", "UserRecord", "run_with",
]  # fmt: skip

T = TypeVar("T")


class Service:
    """Everything a front end (HTTP, CLI) needs, built from one ``Settings``."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        passwords: Passwords | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store or Store.open(
            settings.database_url,
            timeout=settings.db_timeout,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.ctx = Context(settings, self.store, passwords=passwords, clock=clock)
        self.auth = AuthService(self.ctx)
        self.admin = AdminService(self.ctx)
        self.maintenance = Maintenance(self.ctx)
        self.feed = Feed(self.ctx)
        self.clients = Clients(self.ctx)
        self.postman = self.ctx.postman
        for request in ("verify_request", "reset_request"):  # asked for by address: see Recovery._ask
            self.postman.compose(request, self.auth.compose_link)
        self.oauth = OAuth(self.ctx, self.auth)

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    async def start(self) -> None:
        """Check the database (one clear error if it cannot be used), migrate (if enabled) and make
        sure a signing key exists."""
        await self.store.db.check()
        await self.ctx.start()

    def now(self) -> datetime:
        """The service's clock (the HTTP edge caches by it)."""
        return self.ctx.clock()

    def observe_audit(self, observer: AuditObserver) -> None:
        """Tell ``observer`` of every audit row a use case writes (metrics count them)."""
        self.ctx.audit_observers.append(observer)

    async def jwks(self) -> dict[str, Any]:
        """The public keys that verify access tokens now (RFC 7517 JWK Set)."""
        now = self.ctx.clock()
        return (await self.ctx.keys.ring(now)).jwks(now)

    async def ready(self) -> bool:
        """Whether the database answers with its schema current; False while migrations are pending.

        Raises:
            Unavailable: the database cannot be reached.
        """
        return await self.store.db.migrations_current()

    async def count_live_sessions(self) -> int:
        """How many sessions are live now (one scan: for the metrics gauge, cached by its caller)."""
        bounds = SessionBounds.at(self.ctx.clock(), self.ctx.lifetimes)
        async with self.store.read(scan=True) as tx:
            return await tx.count_live_sessions(bounds)

    async def migrate(self) -> None:
        """Check the database (one clear error if it cannot be used) and apply every migration."""
        await self.store.db.check()
        await self.store.db.migrate()

    async def close(self) -> None:
        self.ctx.close()
        await self.store.close()


async def run_with(settings: Settings, work: Callable[[Service], Awaitable[T]]) -> T:
    """Start a service on ``settings``, run ``work`` with it, and close it (one-shot tools)."""
    svc = Service(settings)
    try:
        await svc.start()
        return await work(svc)
    finally:
        await svc.close()

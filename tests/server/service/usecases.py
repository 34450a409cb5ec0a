"""What the use-case tests share: a password, a client, and the audit trail as (event, outcome)."""

from __future__ import annotations

from keyturn.server.service import Client, Service

PW = "correct horse battery staple"
WHO = Client(ip="198.51.100.4", user_agent="test-agent")


async def events(svc: Service) -> list[tuple[str, str]]:
    """Every audit row's (event, outcome), oldest first."""
    async with svc.store.read() as tx:
        return [(e.event, e.outcome) for e in reversed(await tx.audit_events(limit=1000))]

"""The health of a verifier's revocation feed, for health checks and Prometheus."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FeedStatus"]


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """How a verifier's view of the revocation feed stands (its health)."""

    state: str
    """``starting`` (no answer yet), ``following``, ``stale`` (past ``max_staleness``) or ``off``
    (the issuer publishes no feed)."""
    fail_open: bool
    staleness: float | None
    """Seconds since the feed last answered (None before its first answer)."""
    ended_sessions: int
    refused: int
    """Tokens refused because their session ended."""
    failures: int
    """Failed requests in a row."""
    last_error: str | None

    @property
    def healthy(self) -> bool:
        """Not stale: following, off, or not yet started (no token verified yet)."""
        return self.state != "stale"

    def prometheus(self) -> str:
        """The status as Prometheus text (gauges and counters named ``keyturn_verify_feed_*``)."""
        lines = [
            ("up", "0 while the feed is stale, else 1", int(self.healthy)),
            ("stale", "1 while past max_staleness (tokens refused with 503, or let through if fail-open)",
             int(self.state == "stale")),
            ("fail_open", "1 if a stale feed lets tokens through", int(self.fail_open)),
            ("staleness_seconds", "seconds since the feed last answered",
             -1 if self.staleness is None else round(self.staleness, 3)),
            ("ended_sessions", "ended sessions held in memory", self.ended_sessions),
            ("refused_total", "tokens refused because their session ended", self.refused),
            ("failures", "failed feed requests in a row", self.failures),
        ]  # fmt: skip
        out = []
        for name, about, value in lines:
            kind = "counter" if name.endswith("_total") else "gauge"
            out += [f"# HELP keyturn_verify_feed_{name} {about}", f"# TYPE keyturn_verify_feed_{name} {kind}",
                    f"keyturn_verify_feed_{name} {value}"]  # fmt: skip
        return "\n".join(out) + "\n"

"""Prometheus metrics at ``GET /metrics``: HTTP traffic, sign-in and refresh outcomes, live sessions.

Each app keeps its metrics in a ``CollectorRegistry`` of its own (``app.state.metrics``), never in
prometheus_client's global one, so two apps in one process never mix their numbers.

Outcomes are counted at two spots, never twice: the audit rows that use cases write (a successful
sign-in, rotation, grace-window replay, failed password, registration, logout) reach
``Metrics.observe_audit`` through ``Context.audit_observers``; refusals that leave the service as
errors (every refused refresh, rate limits, an unavailable store) reach ``observe_refusal`` from
the error handler. Audit rows are counted once their transaction has committed: a rotation that
a later refusal in the same transaction rolls back is never counted.

HTTP requests are labelled by route template (``/v1/auth/sessions/{session_id}``); requests no
route claims (unknown paths, bodies ``BodyLimit`` refuses before routing) are labelled ``other``,
and methods outside the usual seven ``other`` too, so label sets stay bounded whatever clients
send. ``/metrics`` itself is not counted.

The ``keyturn_active_sessions`` gauge is a count in the database, made at scrape time at most once
per ``ACTIVE_SESSIONS_TTL`` (of the service's clock); when the database is down the last value is
kept (or the gauge is left out), and the scrape still answers.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...core.errors import InvalidGrant, InvalidToken, KeyturnError, RateLimited, Unavailable
from ...verify.bearer import bearer_token
from ..service import AuditRecord, Service
from . import hot, routes

__all__ = [
    "ACTIVE_SESSIONS_TTL", "METRICS_PATH", "ActiveSessions", "HttpMetrics", "Metrics", "install_metrics",
    "observe_refusal",
]  # fmt: skip

_log = logging.getLogger("keyturn.http")

METRICS_PATH = "/metrics"
ACTIVE_SESSIONS_TTL = timedelta(seconds=15)
UNMATCHED_ROUTE = "other"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# (counter, label values every deployment shows from the start, at 0)
_FLOWS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "logins": ("outcome", "Sign-ins by outcome.", ("ok", "failed", "rate_limited", "unavailable")),
    "refreshes": (
        "outcome",
        "Refresh-token presentations by outcome.",
        ("rotated", "grace_replay", "reuse_detected", "expired", "revoked", "invalid", "rate_limited", "unavailable"),
    ),
    "registrations": (
        "outcome",
        "Account registrations by outcome.",
        ("ok", "taken", "closed", "invalid", "rate_limited", "unavailable"),
    ),
    "logouts": ("event", "Sessions ended on request, by audit event.", ("logout", "logout_all", "session_revoked")),
}
# (audit event, audit outcome) -> (flow, label value)
_AUDITED = {
    ("login", "ok"): ("logins", "ok"),
    ("login", "failed"): ("logins", "failed"),
    ("register", "ok"): ("registrations", "ok"),
    ("refresh", "ok"): ("refreshes", "rotated"),
    ("refresh_replay", "ok"): ("refreshes", "grace_replay"),
    ("logout", "ok"): ("logouts", "logout"),
    ("logout_all", "ok"): ("logouts", "logout_all"),
    ("session_revoked", "ok"): ("logouts", "session_revoked"),
}
_ENDPOINT_FLOWS: dict[Any, str] = {
    routes.login: "logins",
    routes.refresh: "refreshes",
    hot.refresh_plain: "refreshes",
    routes.register: "registrations",
}
_GRANT_REFUSALS = {
    "reuse_detected": "reuse_detected",
    "idle_expired": "expired",
    "absolute_expired": "expired",
    "session_expired": "expired",
    "session_revoked": "revoked",
}
_REGISTRATION_REFUSALS = {"username_taken": "taken", "registration_closed": "closed", "invalid_request": "invalid"}


class Metrics:
    """One app's metrics, in a registry of its own."""

    def __init__(self, svc: Service, *, cache_ttl: timedelta = ACTIVE_SESSIONS_TTL) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "keyturn_http_requests", "HTTP requests answered, by route template and status.",
            ("method", "route", "status"), registry=self.registry,
        )  # fmt: skip
        self.aborted = Counter(
            "keyturn_http_requests_aborted", "HTTP requests that ended with no response sent, by route template.",
            ("method", "route"), registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "keyturn_http_request_duration_seconds", "Time to answer an HTTP request, by route template.",
            ("method", "route"), buckets=_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.flows: dict[str, Counter] = {}
        for flow, (label, doc, values) in _FLOWS.items():
            counter = Counter(f"keyturn_{flow}", doc, (label,), registry=self.registry)
            for value in values:
                counter.labels(value)
            self.flows[flow] = counter
        # Labelled children looked up once each (prometheus_client's ``labels`` costs several µs a call).
        self._audited = {key: self.flows[flow].labels(value) for key, (flow, value) in _AUDITED.items()}
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.active_sessions = ActiveSessions(svc, cache_ttl)
        self.registry.register(self.active_sessions)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def observe_audit(self, record: AuditRecord) -> None:
        """Count a committed audit row (an ``AuditObserver``); events that are not outcomes are ignored."""
        counter = self._audited.get((record.event, record.outcome))
        if counter is not None:
            counter.inc()

    def observe_refusal(self, endpoint: object, exc: KeyturnError, flow: str | None = None) -> None:
        """Count an error that a sign-in, refresh or registration route answers with (``flow``:
        the counted flow of a route that serves several, such as the OAuth token endpoint)."""
        flow = flow or _ENDPOINT_FLOWS.get(endpoint)
        outcome = None if flow is None else _refusal_outcome(flow, exc)
        if flow is not None and outcome is not None:
            self.flows[flow].labels(outcome).inc()

    def observe(self, method: str, route: str, status: int | None, seconds: float) -> None:
        """Count a request answered with ``status`` (a response was sent) and time it; or, when
        ``status`` is None, one that ended with no response sent (the client left, or its body broke)."""
        method = method if method in _METHODS else "other"
        if status is None:
            self.aborted.labels(method, route).inc()
            return
        children = self._answered.get((method, route, status))
        if children is None:  # one entry per method, route template and status, as the metrics have
            children = self.requests.labels(method, route, str(status)), self.duration.labels(method, route)
            self._answered[method, route, status] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _refusal_outcome(flow: str, exc: KeyturnError) -> str | None:
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, Unavailable):
        return "unavailable"
    if flow == "refreshes" and isinstance(exc, InvalidGrant):
        return _GRANT_REFUSALS.get(exc.reason, "invalid")
    if flow == "registrations":
        return _REGISTRATION_REFUSALS.get(exc.code)
    return None  # failed passwords are counted from their audit row


class ActiveSessions:
    """The ``keyturn_active_sessions`` gauge: a cached count of live sessions in the database."""

    def __init__(self, svc: Service, ttl: timedelta) -> None:
        self._svc = svc
        self._ttl = ttl
        self._value: int | None = None
        self._counted_at: datetime | None = None
        self._lock = asyncio.Lock()

    async def update(self) -> None:
        """Count again if the last attempt is older than the TTL; a failure keeps the old value."""
        async with self._lock:
            now = self._svc.now()
            last = self._counted_at
            if last is not None and last <= now < last + self._ttl:
                return
            self._counted_at = now  # failures too: a down database is asked again after the TTL
            try:
                self._value = await self._svc.count_live_sessions()
            except KeyturnError:
                _log.warning(
                    "could not count active sessions; the gauge is %s",
                    "stale" if self._value is not None else "omitted",
                )

    def collect(self) -> Iterator[Metric]:
        if self._value is not None:
            yield GaugeMetricFamily("keyturn_active_sessions", "Sessions neither revoked nor expired.", self._value)


class HttpMetrics:
    """Pure ASGI middleware: counts and times every request by method, route template and status.

    The status is the one actually sent. An exception that escapes before any response started is
    answered 500 by Starlette's ``ServerErrorMiddleware`` (outside every user middleware), so it
    counts as 500. A request that ends with no response at all (the client went away mid-body, or
    sent a body the server could not parse) is counted apart, as aborted: nothing was answered, and
    any client can cause it, so it must not look like a server error.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: list[Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # the app's live route list, for requests no FastAPI route claimed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        path, started = scope["path"], time.perf_counter()
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except ClientDisconnect:
            raise  # nobody is left to answer: aborted, unless a response had started
        except Exception:
            status = 500 if status is None else status  # ServerErrorMiddleware answers it
            raise
        finally:
            self.metrics.observe(scope["method"], self._template(scope, path), status, time.perf_counter() - started)

    def _template(self, scope: Scope, path: str) -> str:
        """The route's template, never the raw path (ids in paths would make labels unbounded)."""
        template = getattr(scope.get("route"), "path_format", None)
        if isinstance(template, str):
            return template
        for route in self.routes:  # mounts and plain Starlette routes (static files, the OpenAPI document)
            regex = getattr(route, "path_regex", None)
            if regex is not None and regex.match(path):
                return str(route.path_format)
        return UNMATCHED_ROUTE


def install_metrics(app: FastAPI, svc: Service) -> None:
    """Add ``GET /metrics``, the HTTP middleware and the audit observer, when metrics are enabled.

    Call it after every other middleware is added, so that it measures them too.
    """
    if not svc.settings.serve_metrics:
        app.state.metrics = None
        return
    metrics = Metrics(svc)
    app.state.metrics = metrics
    svc.observe_audit(metrics.observe_audit)
    app.add_api_route(METRICS_PATH, _scrape, methods=["GET"], include_in_schema=False)
    app.add_middleware(HttpMetrics, metrics=metrics, routes=app.router.routes)


async def _scrape(request: Request) -> Response:
    """The Prometheus text exposition; with ``KEYTURN_METRICS_TOKEN`` set, a bearer token is needed."""
    svc: Service = request.app.state.service
    metrics: Metrics = request.app.state.metrics
    _check_token(request.headers.get("authorization", ""), svc)
    await metrics.active_sessions.update()
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def _check_token(authorization: str, svc: Service) -> None:
    expected = svc.settings.metrics_token
    if expected is None:
        return
    token = bearer_token(authorization)
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise InvalidToken("The metrics token is incorrect.", reason="bad_metrics_token")


def observe_refusal(request: Request, exc: KeyturnError, flow: str | None = None) -> None:
    """Count ``exc`` if the route it ends is one whose outcomes are counted (the error handler's
    hook), or if it ends a counted ``flow`` (routes that answer their errors themselves)."""
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.observe_refusal(request.scope.get("endpoint"), exc, flow)

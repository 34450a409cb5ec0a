"""The ASGI application: routes, error table, middleware, JWKS and health endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from ... import __version__
from ...core.errors import KeyturnError
from ..config import Settings, load_settings
from ..logs import configure_logging
from ..service import Service
from .admin import router as admin_router
from .cookies import BrowserMode, CookieFilter
from .errors import error_response, install_error_handlers
from .feed import router as feed_router
from .feed import wake_on_exit
from .hot import HotPath
from .metadata import add_metadata
from .metrics import install_metrics
from .middleware import BodyLimit, HeaderLimit, SecurityHeaders
from .oauth import router as oauth_router
from .ratelimit import RateLimits
from .recovery import router as recovery_router
from .routes import router

__all__ = ["create_app", "create_app_from_env"]

_log = logging.getLogger("keyturn.http")
JWKS_MAX_AGE = 300
STATIC_DIR = Path(__file__).with_name("static")


def create_app(settings: Settings, *, service: Service | None = None) -> FastAPI:
    """Build the keyturn ASGI app; the service starts (migrations, first key) on startup."""
    svc = service or Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        restore_signals = wake_on_exit(svc.feed)
        _log.info(
            "keyturn ready: issuer %s, signing %s, registration %s, metrics %s, API docs %s",
            settings.issuer, settings.signing_alg, "open" if settings.allow_registration else "closed",
            _on(settings.serve_metrics), _on(settings.serve_api_docs),
        )  # fmt: skip
        # Everything alive now (framework, routes, models, keys) lives as long as the process: out
        # of the collector's sight, a full collection scans only what requests allocate, not tens
        # of milliseconds of start-up objects while a request waits.
        gc.freeze()
        tasks = _background(svc)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            restore_signals()
            svc.feed.close()
            await app.state.limits.close()
            await svc.close()

    app = _fastapi(settings, lifespan)
    app.state.service = svc
    app.state.limits = RateLimits(settings)
    app.state.browser = BrowserMode(settings)
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(feed_router)
    app.include_router(oauth_router)
    app.include_router(recovery_router)
    _add_operational_routes(app, svc)
    if settings.serve_web_page:
        _add_web_page(app, settings)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CookieFilter)  # before FastAPI parses every request's cookies
    app.add_middleware(HeaderLimit, max_bytes=settings.max_header_bytes, max_fields=settings.max_header_fields)
    if settings.cors_origins:
        # Only listed origins are echoed, never reflected; no CORS headers at all by default.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders, hsts=settings.hsts)
    install_metrics(app, svc)  # its middleware is outside the others, so it times them all
    app.add_middleware(HotPath, settings=settings, metrics=app.state.metrics)  # outermost: the plain hot requests
    return app


def _fastapi(settings: Settings, lifespan: Any) -> FastAPI:
    """The app, with ``/docs`` and ``/openapi.json`` only when ``KEYTURN_API_DOCS`` (or development) asks."""
    about: dict[str, Any] = {
        "title": "keyturn",
        "version": __version__,
        "summary": "Short-lived JWT access tokens, rotating refresh tokens, instant logout.",
        "lifespan": lifespan,
    }
    if settings.serve_api_docs:
        return FastAPIOffline(redoc_url=None, favicon_url="", **about)
    return FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **about)


def _background(svc: Service) -> list[asyncio.Task[None]]:
    """What runs beside the requests while the app is up: pruning, and sending the outbox's mail."""
    tasks = []
    if svc.settings.prune_interval:
        tasks.append(asyncio.create_task(svc.maintenance.prune_periodically(), name="keyturn-prune"))
    if svc.postman.enabled:
        tasks.append(asyncio.create_task(svc.postman.run(), name="keyturn-mail"))
    return tasks


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _add_web_page(app: FastAPI, settings: Settings) -> None:
    """The demo page at ``/``: static HTML, CSS and JS modules, no build step. The page learns the
    two settings it must follow from attributes of its ``<body>``: whether sign-up needs an
    address (``KEYTURN_REQUIRE_VERIFIED_EMAIL``) and whether mail is sent at all."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    email = "required" if settings.require_verified_email else "optional"
    body = f'<body data-email="{email}" data-mail="{_on(settings.mail is not None)}">'

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(_index_page(body), headers={"Cache-Control": "no-cache"})


@functools.cache
def _index_page(body: str) -> str:
    """``index.html`` with its ``<body>`` tag as the settings have it, read once."""
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8").replace("<body>", body, 1)


def _add_operational_routes(app: FastAPI, svc: Service) -> None:
    add_metadata(app, svc)

    @app.get("/.well-known/jwks.json", tags=["keys"])
    async def jwks() -> JSONResponse:
        """The public keys that verify access tokens (RFC 7517 JWK Set)."""
        return JSONResponse(await svc.jwks(), headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    async def readyz(request: Request) -> Any:
        """Readiness: the database answers and its schema is current."""
        try:
            current = await svc.ready()
        except KeyturnError as exc:
            return error_response(exc.code, "The database is unreachable.", {"Retry-After": "1"})
        if not current:
            return error_response("temporarily_unavailable", "Database migrations are pending.")
        return {"status": "ready"}


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)

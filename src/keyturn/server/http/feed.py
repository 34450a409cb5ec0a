"""``GET /v1/revocations``: the revocation feed, as long polls (``keyturn.core.revocations``).

Long polling over plain GETs, not server-sent events: every answer is a whole JSON page that any
instance can give for any cursor (the cursor is the reader's only state), it passes every proxy
and load balancer without special settings, and a reader is a loop of ordinary requests (httpx,
sync or async). A poll with nothing new is held until news arrives or ``wait`` passes.

No credential is needed to read it: it shows random session ids and times, nothing that names a
user, and only someone already holding a token of a session can tell that it is listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ...verify.bearer import NO_STORE
from ..service import MAX_WAIT, Feed
from .routes import service

__all__ = ["router", "wake_on_exit"]

router = APIRouter(tags=["revocations"])


@router.get(
    "/v1/revocations",
    responses={
        400: {"description": "The cursor is not one this feed sent (`invalid_request`)"},
        503: {"description": "Store unavailable (`temporarily_unavailable`)"},
    },
)
async def revocations(
    request: Request,
    after: Annotated[str | None, Query(max_length=64, description="The cursor of the last page read.")] = None,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT, description="Seconds to wait for news.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Entries per page at most.")] = 1000,
) -> JSONResponse:
    """Sessions ended since ``after`` (without it: every ended session whose access tokens may
    still verify), in commit order. With ``wait``, a poll with nothing new is answered as soon as
    a session ends, or after ``wait`` seconds. ``more``: ask again at once; ``reset``: the cursor
    came from another database, so forget what it listed and keep these."""
    feed = service(request).feed
    polling = asyncio.ensure_future(feed.follow(after, wait=wait, limit=limit))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((polling, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not polling.done():  # the reader went away: nobody to answer
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        return JSONResponse({}, status_code=499, headers=NO_STORE)
    return JSONResponse(polling.result().to_json(), headers=NO_STORE)


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (a GET has no body, so ``receive`` waits for that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def wake_on_exit(feed: Feed) -> Callable[[], None]:
    """Answer waiting polls as soon as the server is told to stop (SIGTERM, SIGINT), so a graceful
    shutdown does not wait out every long poll. The server's own handlers still run; returns a
    function that puts them back. Off the main thread (an embedded server) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def on_exit(signum: int, frame: Any) -> None:
        feed.close()
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        else:  # the default action (or none was Python's): put it back and take it
            signal.signal(signum, handler)
            signal.raise_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, on_exit)

    def restore() -> None:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is on_exit:
                signal.signal(signum, handler)

    return restore

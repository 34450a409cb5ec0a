"""The issue-18 reference server, served and loaded like keyturn, in the same run.

``bench/reference/express-seed/`` is the tutorial design keyturn grew from: Express 4 +
jsonwebtoken 9, HS256 access and refresh tokens, refresh tokens kept in an in-memory array (nothing
durable, no reuse detection), rotation on ``POST /refresh``. It runs as ``node server.js PORT``
(``NODE_ENV=production``) pinned to the server core, and wrk (``-t1``, on the load core,
``bench/wrk/keyturn.lua``) loads ``GET /protected``, ``POST /refresh`` with chained rotation and
``POST /login`` at keyturn's connection counts and durations. Two variants, as the seed's file
documents: ``default`` (the secrets passed as strings, the design as written) and ``keyobject``
(``SEED_KEYOBJECT=1``, prebuilt key objects). A fresh server per connection count, so its array
holds only that level's chains when refresh is measured (it grows with every login and is never
pruned), warmed up first.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tests.servers import free_port

from bench.overhttp import ROOT, SERVER_CPU, row, served, wrk

SEED = ROOT / "bench" / "reference" / "express-seed"
VARIANTS: dict[str, dict[str, str]] = {"default": {}, "keyobject": {"SEED_KEYOBJECT": "1"}}
# The variant the targets divide by (report.py reads it from the result): the figures for
# the reference (3,900 refreshes/s, 0.16 ms per protected request) are this variant's; the default
# one spends ~0.5 ms more per jsonwebtoken call and runs several times slower.
TARGET_VARIANT = "keyobject"
USERS = 100  # the seed's users: user0..user99, passwords password0..password99
NPM_CI = "npm ci --prefix bench/reference/express-seed --no-audit --no-fund --silent"


def missing() -> str | None:
    """Why the reference cannot run here (scripts/bench installs what it needs), or None."""
    if shutil.which("node") is None:
        return "node is missing"
    if not all((SEED / "node_modules" / name / "package.json").is_file() for name in ("express", "jsonwebtoken")):
        return f"the reference server's node_modules are missing: {NPM_CI}"
    return None


def versions() -> dict[str, str]:
    """Node's version and the seed's installed express and jsonwebtoken."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    out = {"node": node.removeprefix("v")}
    for name in ("express", "jsonwebtoken"):
        out[name] = json.loads((SEED / "node_modules" / name / "package.json").read_text())["version"]
    return out


@contextmanager
def seed(workdir: Path, variant: str) -> Iterator[str]:
    """``node server.js PORT`` pinned to the server core, ready on entry, stopped on exit; yields its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEED_")}
    env.update(NODE_ENV="production", **VARIANTS[variant])
    with served(["node", "server.js", str(port)], port, workdir, cwd=SEED, env=env) as url:
        yield url


@dataclass
class Pair:
    access_token: str
    refresh_token: str


def credentials(i: int = 0) -> dict[str, str]:
    return {"username": f"user{i % USERS}", "password": f"password{i % USERS}"}


async def _log_in(base: str, count: int) -> list[Pair]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def one(i: int) -> Pair:
            r = await client.post("/login", json=credentials(i))
            r.raise_for_status()
            body = r.json()
            return Pair(body["accessToken"], body["refreshToken"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def log_in(base: str, count: int) -> list[Pair]:
    """``count`` logins (users in turn): one refresh chain each."""
    return asyncio.run(_log_in(base, count))


async def _live(base: str, tokens: list[str]) -> int:
    """How many of ``tokens`` the seed still holds: each is refreshed once (one rotation more)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        answers = [await client.post("/refresh", json={"refreshToken": t}) for t in tokens]
    return sum(r.status_code == 200 for r in answers)


def refresh_run(base: str, pairs: list[Pair], seconds: float, tmp: Path) -> dict[str, Any]:
    """Chained rotation with one chain per connection. The seed answers 403 to a refresh token it
    no longer holds, so 0 non-2xx means no token was sent twice and every 200 was a rotation. It
    has no database to read afterwards: instead every chain still waiting in wrk at the end (its
    newest token never sent) must be live, one more refresh with it answering 200. The others
    had a request in flight when wrk stopped (one per connection at most; at saturation that is
    nearly all of them)."""
    tokens, waiting = tmp / f"reference-chains-{len(pairs)}.txt", tmp / f"reference-waiting-{len(pairs)}.txt"
    tokens.write_text("".join(p.refresh_token + "\n" for p in pairs))
    waiting.unlink(missing_ok=True)
    report = wrk(f"{base}/refresh", len(pairs), seconds, "refresh", tokens, extra=["refreshToken", str(waiting)])
    left = [line for line in waiting.read_text().splitlines() if line]
    live = asyncio.run(_live(base, left))
    report["chains_waiting"], report["chains_live"] = len(left), live
    report["verified"] = report["non_2xx"] == 0 and report["socket_errors"] == 0 and live == len(left)
    return report


WARM_UP_S = 1.0


def warm_up(base: str, level: int, tmp: Path) -> None:
    """A fresh Node process compiles its hot paths under the first load: its first phase ran about
    20 % slower than the next. Keyturn's server is warm at 64 connections (the lower levels ran on
    it), so the seed gets ``WARM_UP_S`` of ``/protected`` and of chained refresh first, unrecorded:
    no login, so the array gains only the chains' tokens."""
    pairs = log_in(base, level)
    wrk(f"{base}/protected", level, WARM_UP_S, headers=[f"Authorization: Bearer {pairs[0].access_token}"])
    tokens = tmp / f"reference-warm-up-{level}.txt"
    tokens.write_text("".join(p.refresh_token + "\n" for p in pairs))
    wrk(
        f"{base}/refresh",
        level,
        WARM_UP_S,
        "refresh",
        tokens,
        extra=["refreshToken", str(tmp / "reference-warm-up.out")],
    )


def run_variant(variant: str, levels: Sequence[int], seconds: float, tmp: Path) -> list[dict[str, Any]]:
    """``/protected``, refresh and login at every level, as ``overhttp.run_backend`` runs keyturn's
    ``/me``, refresh and login (same durations; login four times as long above one connection)."""
    rows: list[dict[str, Any]] = []
    login_body = tmp / "reference-login.json"
    login_body.write_text(json.dumps(credentials()))
    for level in levels:
        with seed(tmp / f"reference-{variant}-{level}", variant) as url:
            warm_up(url, level, tmp)
            pairs = log_in(url, level)
            bearer = f"Authorization: Bearer {pairs[0].access_token}"
            protected = wrk(f"{url}/protected", level, seconds, headers=[bearer])
            refresh = refresh_run(url, pairs, seconds, tmp)
            login = wrk(f"{url}/login", level, seconds * (1 if level == 1 else 4), "post", login_body)
        for endpoint, report in (("protected", protected), ("refresh", refresh), ("login", login)):
            rows.append({"variant": variant, **row("reference", endpoint, level, report)})
    return rows


def run(levels: Sequence[int], seconds: float, tmp: Path) -> dict[str, Any]:
    """Both variants at every level: the result's ``reference`` section."""
    rows = [r for variant in VARIANTS for r in run_variant(variant, levels, seconds, tmp)]
    return {
        "server": "express-seed (bench/reference/express-seed): Express + jsonwebtoken, HS256, refresh tokens in an "
        "in-memory array; node server.js, NODE_ENV=production, one process pinned to CPU " + SERVER_CPU,
        "target_variant": TARGET_VARIANT,
        "variants": {
            name: " ".join(f"{k}={v}" for k, v in env.items()) or "as written" for name, env in VARIANTS.items()
        },
        "versions": versions(),
        "rows": rows,
    }


def main() -> None:
    """``python -m bench.reference [LEVEL ...]``: this part alone, 5 s phases, rows printed as JSON."""
    if problem := missing():
        sys.exit(problem)
    levels = [int(x) for x in (sys.argv[1:] or ["1", "16", "64"])]
    with tempfile.TemporaryDirectory(prefix="keyturn-bench-reference-") as t:
        result = run(levels, 5, Path(t))
    for r in result["rows"]:
        print(json.dumps(r))


if __name__ == "__main__":
    main()

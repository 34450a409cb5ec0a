"""Fixtures of the security tests: a signed-in target whose server key forges tokens, an attacker
serving their own keys, a signed-in ``alice``, and another keyturn deployment."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.core.passwords import Passwords
from keyturn.server.service import Service
from tests.conftest import Clock, make_settings
from tests.helpers import login, register, signed_in
from tests.security.forgery import Attacker, Target, decode_segment, serving_attacker


@pytest.fixture
async def target(client: httpx.AsyncClient, service: Service, clock: Clock) -> Target:
    await register(client)
    tokens = await login(client)
    ring = await service.ctx.keys.ring(clock())
    key = ring.signer(clock())
    claims = decode_segment(tokens["access_token"].split(".")[1])
    return Target(client, service, clock, key, tokens["access_token"], tokens["refresh_token"], claims)


@pytest.fixture
def attacker(clock: Clock) -> Iterator[Attacker]:
    with serving_attacker(clock) as serving:
        yield serving


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    return await signed_in(client)


@pytest.fixture
async def other_service(tmp_path: Path, clock: Clock, fast_passwords: Passwords) -> AsyncIterator[Service]:
    """Another keyturn deployment: another secret, another SQLite file."""
    other = Service(make_settings(tmp_path / "other.db"), passwords=fast_passwords, clock=clock)
    await other.start()
    yield other
    await other.close()

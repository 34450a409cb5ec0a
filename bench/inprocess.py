"""In-process rates of keyturn's own operations next to the bare primitive each rests on, in one run.

- verify: ``Verifier.verify`` uncached and cached versus a bare ``cryptography`` ``.verify`` of the
  same token's signature over the same signing input (ES256, EdDSA, RS256);
- issue: ``issue_access_token`` versus a bare ``private_key.sign`` of the same signing input;
- password: ``Passwords().hash`` versus a bare ``argon2.PasswordHasher`` with the same parameters,
  and ``Passwords().verify`` (what login does).

The two sides of each ratio are interleaved: short batches of bare and keyturn alternate over several
rounds (which side goes first alternates too), and the ratio is taken from the median per-call times.
Rates are calls per second in one thread; ratio is keyturn's rate over the bare one.

    .venv/bin/python bench/inprocess.py [--quick]     # or: python -m bench.inprocess [--quick]
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from argon2 import PasswordHasher
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from keyturn.core.keys import Alg, SigningKey, generate_key
from keyturn.core.passwords import Passwords
from keyturn.core.tokens import issue_access_token
from keyturn.verify import Verifier

ISSUER = "https://auth.bench"
ALGS: tuple[Alg, ...] = ("ES256", "EdDSA", "RS256")


class Profile(NamedTuple):
    batch_seconds: float  # a batch of calls takes about this long
    rounds: int  # interleaved rounds per ratio
    hashes: int  # argon2 hashes per batch
    hash_rounds: int
    batch_calls: int = 0  # a fixed batch size instead of batch_seconds


DEFAULT = Profile(batch_seconds=0.05, rounds=7, hashes=3, hash_rounds=5)
QUICK = Profile(batch_seconds=0.02, rounds=5, hashes=2, hash_rounds=3)

Call = Callable[[], object]


def timed(call: Call, n: int) -> float:
    """Mean seconds per call over a batch of ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


def batch_size(call: Call, profile: Profile) -> int:
    """The profile's fixed batch size, or how many calls take about ``batch_seconds`` (doubling to find out)."""
    n = 1
    while not profile.batch_calls:
        elapsed = timed(call, n) * n
        if elapsed >= profile.batch_seconds / 4:
            return max(1, round(n * profile.batch_seconds / elapsed))
        n *= 2
    return profile.batch_calls


def batches(call: Call, profile: Profile) -> list[float]:
    """Seconds per call in each of ``rounds`` batches of ``call`` alone."""
    size = batch_size(call, profile)
    return [timed(call, size) for _ in range(profile.rounds)]


def interleaved(bare: Call, ours: Call, profile: Profile) -> tuple[float, float]:
    """Median seconds per call of ``bare`` and ``ours``, their batches alternating, and which goes first too."""
    samples: tuple[list[float], list[float]] = ([], [])
    sides = [(bare, batch_size(bare, profile), samples[0]), (ours, batch_size(ours, profile), samples[1])]
    for r in range(profile.rounds):
        for call, size, out in sides if r % 2 == 0 else reversed(sides):
            out.append(timed(call, size))
    return statistics.median(samples[0]), statistics.median(samples[1])


def signing_input(token: str) -> tuple[bytes, bytes]:
    """The bytes a JWS signature covers, and the raw signature."""
    head, body, sig = token.split(".")
    return f"{head}.{body}".encode(), base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))


def bare_verify(key: SigningKey, message: bytes, signature: bytes) -> Call:
    """A bare ``cryptography`` verification of ``signature`` (JWS raw form) over ``message``."""
    public = key.public_key
    if key.alg == "ES256":
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        der = utils.encode_dss_signature(r, s)
        return lambda: public.verify(der, message, ec.ECDSA(hashes.SHA256()))
    if key.alg == "RS256":
        return lambda: public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    return lambda: public.verify(signature, message)


def bare_sign(key: SigningKey, message: bytes) -> Call:
    """A bare ``cryptography`` signature of ``message`` with the key's algorithm."""
    private = key.private_key
    if key.alg == "ES256":
        return lambda: private.sign(message, ec.ECDSA(hashes.SHA256()))
    if key.alg == "RS256":
        return lambda: private.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return lambda: private.sign(message)


def rates(bare: float, ours: float) -> tuple[float, float, float]:
    """Per-call seconds to (bare per s, keyturn per s, keyturn / bare)."""
    return round(1 / bare, 1), round(1 / ours, 1), round(bare / ours, 3)


def measure_key(key: SigningKey, profile: Profile) -> tuple[dict[str, Any], dict[str, Any]]:
    """The verify and issue entries for one key."""
    now = datetime.now(UTC)

    def mint() -> str:
        return issue_access_token(
            key, issuer=ISSUER, audience=ISSUER, subject="u", session_id="s", client_id="c", scope="profile",
            now=now, ttl=timedelta(minutes=15),
        )[0]  # fmt: skip

    token = mint()
    message, signature = signing_input(token)
    jwks = {"keys": [key.public_jwk()]}
    uncached = Verifier(ISSUER, ISSUER, jwks=jwks, cache_size=0)
    cached = Verifier(ISSUER, ISSUER, jwks=jwks)
    cached.verify(token)  # fills the cache
    bare, slow = interleaved(bare_verify(key, message, signature), lambda: uncached.verify(token), profile)
    fast = statistics.median(batches(lambda: cached.verify(token), profile))
    bare_per_s, uncached_per_s, ratio = rates(bare, slow)
    verify = {"alg": key.alg, "bare_per_s": bare_per_s, "uncached_per_s": uncached_per_s, "ratio": ratio,
              "cached_per_s": round(1 / fast, 1)}  # fmt: skip
    sign_per_s, issue_per_s, ratio = rates(*interleaved(bare_sign(key, message), mint, profile))
    return verify, {"alg": key.alg, "bare_sign_per_s": sign_per_s, "issue_per_s": issue_per_s, "ratio": ratio}


def measure_passwords(profile: Profile) -> dict[str, Any]:
    """keyturn's argon2id hash next to a bare hasher with the same parameters, and its verification rate."""
    passwords = Passwords()
    ours = passwords._hasher  # the parameters keyturn hashes with
    params = {"time_cost": ours.time_cost, "memory_cost": ours.memory_cost, "parallelism": ours.parallelism}
    hasher = PasswordHasher(
        time_cost=ours.time_cost, memory_cost=ours.memory_cost, parallelism=ours.parallelism,
        hash_len=ours.hash_len, salt_len=ours.salt_len, type=ours.type,
    )  # fmt: skip
    plain = secrets.token_urlsafe(12)
    stored = passwords.hash(plain)
    slow = profile._replace(batch_calls=profile.hashes, rounds=profile.hash_rounds)
    bare_per_s, hash_per_s, ratio = rates(*interleaved(lambda: hasher.hash(plain), lambda: passwords.hash(plain), slow))
    check = statistics.median(batches(lambda: passwords.verify(stored, plain), slow))
    return {"params": params, "bare_hash_per_s": bare_per_s, "hash_per_s": hash_per_s, "ratio": ratio,
            "verify_per_s": round(1 / check, 1)}  # fmt: skip


def run(quick: bool = False) -> dict[str, Any]:
    """Measure everything once; rates are calls per second, ratios keyturn's rate over the bare one."""
    started = time.perf_counter()
    profile = QUICK if quick else DEFAULT
    verify: list[dict[str, Any]] = []
    issue: list[dict[str, Any]] = []
    for alg in ALGS:
        verified, issued = measure_key(generate_key(alg, now=datetime.now(UTC)), profile)
        verify.append(verified)
        issue.append(issued)
    return {
        "verify": verify,
        "issue": issue,
        "password": measure_passwords(profile),
        "seconds": round(time.perf_counter() - started, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter batches, fewer rounds (about 4 s)")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))

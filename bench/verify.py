"""In-process cost of verifying one access token: keyturn uncached and cached, next to a bare
`cryptography` signature verification of the same token, measured in one run.

    .venv/bin/python bench/verify.py [--n 3000]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from keyturn.keys import SigningKey, generate_key
from keyturn.tokens import issue_access_token
from keyturn.verify import Verifier

ISSUER = "https://auth.bench"


def per_call_us(n: int, call: Callable[[], object], rounds: int = 7) -> float:
    """Median over rounds of the mean time per call, in microseconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            call()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def bare_verify(key: SigningKey, token: str) -> Callable[[], object]:
    head, body, sig = token.split(".")
    message = f"{head}.{body}".encode()
    signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    public = key.public_key
    if key.alg == "ES256":
        der = utils.encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        return lambda: public.verify(der, message, ec.ECDSA(hashes.SHA256()))
    if key.alg == "RS256":
        return lambda: public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    return lambda: public.verify(signature, message)


def main(n: int) -> None:
    now = datetime.now(UTC)
    print(f"{'alg':<6} {'bare crypto':>12} {'uncached':>10} {'ratio':>7} {'cached':>9} {'cached/s':>11}")
    for alg in ("ES256", "EdDSA", "RS256"):
        key = generate_key(alg, now=now)  # type: ignore[arg-type]
        token, _ = issue_access_token(
            key, issuer=ISSUER, audience=ISSUER, subject="u", session_id="s", client_id="c", scope="profile",
            now=now, ttl=timedelta(minutes=15),
        )  # fmt: skip
        jwks = {"keys": [key.public_jwk()]}
        uncached = Verifier(ISSUER, ISSUER, jwks=jwks, cache_size=0)
        cached = Verifier(ISSUER, ISSUER, jwks=jwks)
        cached.verify(token)
        bare = per_call_us(n, bare_verify(key, token))
        slow = per_call_us(n, lambda v=uncached, t=token: v.verify(t))
        fast = per_call_us(n * 20, lambda v=cached, t=token: v.verify(t))
        print(f"{alg:<6} {bare:>10.1f}us {slow:>8.1f}us {bare / slow:>7.2f} {fast:>7.2f}us {1e6 / fast:>11,.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    main(parser.parse_args().n)

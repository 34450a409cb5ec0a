"""Fuzz target for the token parsers (run by ``tests/test_fuzz.py``, or by hand).

    python -m tests.fuzz_tokens -atheris_runs=100000 -max_total_time=20   (from the repository root)

One input is a byte string; its first byte picks a target and the rest drives it:

- ``verify_access_token`` on arbitrary text, and on mutations of one valid token (flipped
  bytes, cuts, extensions, insertions, segments re-encoded in other base64 spellings, swapped
  or repeated segments): only ``InvalidToken`` subclasses may escape, and claims come back only
  for the untouched token;
- ``RefreshTokenCodec.decode`` on arbitrary values and on mutations of one valid token: only
  ``InvalidGrant`` subclasses, and a result only for the untouched token;
- ``parse_duration`` on arbitrary text and numbers: only ``ValueError``, and a result is a
  duration between 0 and 10 years.

Anything else escaping is a crash. ``check`` needs no atheris, so hypothesis can feed it too.
"""

from __future__ import annotations

import base64
import builtins
import struct
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keyturn.core.tokens import AccessClaims

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ISSUER = "https://auth.keyturn.test"
SESSION = uuid.UUID("3d1f0c9e-7b7a-4a4e-9d1e-5c6b7a8d9e0f")


class Bytes:
    """Consumes the fuzzer's bytes; past the end every read is zero or empty."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def int(self, bound: int) -> int:
        """A number in ``range(bound)`` from the next two bytes."""
        chunk = self.data[self.pos : self.pos + 2]
        self.pos += 2
        return int.from_bytes(chunk.ljust(2, b"\0"), "big") % bound if bound > 0 else 0

    def take(self, n: builtins.int) -> bytes:  # `int` is the method above
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


class Targets:
    """The code under test and one valid token of each kind (imported late: see ``main``)."""

    def __init__(self) -> None:
        from keyturn.core.errors import InvalidGrant, InvalidToken
        from keyturn.core.keys import KeyRing, generate_key
        from keyturn.core.masterkey import MasterKey
        from keyturn.core.refresh import RefreshTokenCodec
        from keyturn.core.tokens import issue_access_token, verify_access_token
        from keyturn.server.config import parse_duration

        key = generate_key("ES256", now=T0)
        self.ring = KeyRing([key], token_ttl=timedelta(minutes=15), leeway=timedelta(seconds=5))
        self.access, _ = issue_access_token(
            key,
            issuer=ISSUER,
            audience=ISSUER,
            subject=str(uuid.uuid4()),
            session_id=str(SESSION),
            client_id="keyturn",
            scope="profile",
            now=T0,
            ttl=timedelta(minutes=15),
        )
        self.codec = RefreshTokenCodec.from_master(MasterKey("fuzz-" + "k" * 48))
        self.refresh = self.codec.encode(SESSION, 7)
        self.verify_access_token = verify_access_token
        self.parse_duration = parse_duration
        self.InvalidToken = InvalidToken
        self.InvalidGrant = InvalidGrant

    def verify(self, token: object) -> AccessClaims:
        return self.verify_access_token(token, self.ring, issuer=ISSUER, audience=ISSUER, now=T0 + timedelta(seconds=1))


_targets: Targets | None = None


def targets() -> Targets:
    global _targets  # built once per process, late so that atheris can instrument the import
    if _targets is None:
        _targets = Targets()
    return _targets


def _reencode(segment: str, src: Bytes) -> str:
    """The segment's bytes, perhaps altered, in one of several base64 spellings."""
    try:
        raw = bytearray(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:
        raw = bytearray(segment.encode("latin-1", "replace"))
    if raw and src.int(2):
        raw[src.int(len(raw))] ^= 1 << src.int(8)
    spelling = src.int(4)
    if spelling == 0:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    if spelling == 1:
        return base64.urlsafe_b64encode(raw).decode()  # with padding
    if spelling == 2:
        return base64.b64encode(raw).rstrip(b"=").decode()  # the standard alphabet
    encoded = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # non-zero unused trailing bits
    return encoded[:-1] + "BCDFGHJKLMNOPQRSTUVWXYZ"[src.int(23)] if len(encoded) % 4 in (2, 3) else encoded


def mutate(token: str, src: Bytes, *, segmented: bool) -> str:
    """One mutation of ``token`` chosen and shaped by ``src``."""
    raw = bytearray(token.encode("latin-1"))
    op = src.int(8 if segmented else 5)
    pos = src.int(len(raw) + 1)
    if op == 0:  # flip one bit
        raw[min(pos, len(raw) - 1)] ^= 1 << src.int(8)
        return raw.decode("latin-1")
    if op == 1:  # cut
        return token[:pos]
    if op == 2:  # extend
        return token + src.rest().decode("utf-8", "replace")
    if op == 3:  # insert
        return token[:pos] + src.rest().decode("utf-8", "replace") + token[pos:]
    if op == 4:  # replace one character
        return token[: min(pos, len(token) - 1)] + chr(src.int(0x250)) + token[min(pos, len(token) - 1) + 1 :]
    parts = token.split(".")
    if op == 5:
        i = src.int(len(parts))
        parts[i] = _reencode(parts[i], src)
    elif op == 6:  # swap two segments
        i, j = src.int(len(parts)), src.int(len(parts))
        parts[i], parts[j] = parts[j], parts[i]
    else:  # repeat or drop a segment
        i = src.int(len(parts))
        parts.insert(i, parts[i]) if src.int(2) else parts.pop(i)
    return ".".join(parts)


def _number(src: Bytes) -> object:
    kind = src.int(3)
    if kind == 0:
        return int.from_bytes(src.take(8), "big", signed=True)
    if kind == 1:
        return struct.unpack(">d", src.take(8).ljust(8, b"\0"))[0]  # includes nan, inf, -0.0
    return src.rest().decode("utf-8", "replace")


def check_access(src: Bytes) -> None:
    t = targets()
    token = mutate(t.access, src, segmented=True) if src.int(4) else src.rest().decode("utf-8", "replace")
    try:
        claims = t.verify(token)
    except t.InvalidToken:
        return
    assert token == t.access, f"a changed access token was accepted: {token!r}"
    assert claims.sid == str(SESSION)


def check_refresh(src: Bytes) -> None:
    t = targets()
    kind = src.int(8)
    token: object
    if kind == 0:
        token = _number(src)
    elif kind == 1:
        token = src.rest()  # bytes, not str
    elif kind == 2:
        token = "kt_rt_" + src.rest().decode("utf-8", "replace")
    else:
        token = mutate(t.refresh, src, segmented=False)
    try:
        decoded = t.codec.decode(token)
    except t.InvalidGrant:
        return
    assert token == t.refresh, f"a changed refresh token was accepted: {token!r}"
    assert (decoded.session_id, decoded.generation) == (SESSION, 7)


def check_duration(src: Bytes) -> None:
    value = _number(src)
    try:
        duration = targets().parse_duration(value)
    except ValueError:
        return
    assert isinstance(duration, timedelta)
    assert timedelta(0) <= duration <= timedelta(days=3660), (value, duration)


CHECKS = (check_access, check_refresh, check_duration)


def check(data: bytes) -> None:
    """Run one input against the target its first byte names."""
    src = Bytes(data)
    CHECKS[src.int(len(CHECKS))](src)


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["keyturn"]):
        targets()
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

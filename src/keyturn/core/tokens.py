"""Access tokens: RFC 9068 JWTs, issued and verified with the rules of RFC 8725.

Tokens are built here (compact JWS, RFC 7515 §7.1) and signed and checked by the key itself
(``SigningKey.sign``, low-S for ES256, and ``verify_signature``); the parsing and every check on
the way in are ours, because a JOSE library's defaults are too lenient for an access token (PyJWT
lets a missing ``exp`` pass, and ``"exp": "123"``, and checks against the wall clock, not ``now``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ._strictjson import strict_decoder
from .errors import InsufficientScope, InvalidClaim, MalformedToken, TokenExpired, TokenNotYetValid, UnsupportedHeader
from .keys import KeyRing, SigningKey

__all__ = ["MAX_TOKEN_LENGTH", "AccessClaims", "issue_access_token", "scope_names", "verify_access_token"]

MAX_TOKEN_LENGTH = 8192
MAX_NUMERIC_DATE = 253402300800  # 10000-01-01: beyond it a datetime cannot hold the value
TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# Certificate thumbprints pass (nothing reads them); anything else is refused (RFC 8725 §3.10).
_ALLOWED_HEADERS = frozenset({"alg", "kid", "typ", "x5t", "x5t#S256"})
_REQUIRED_STRINGS = ("iss", "sub", "client_id", "jti")  # RFC 9068 §2.2; `sid` too when asked
_HEADER_CACHE_SIZE = 64  # distinct header segments remembered; a ring has a handful of keys


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified claims of an access token."""

    sub: str
    sid: str
    client_id: str
    scope: tuple[str, ...]
    iss: str
    aud: tuple[str, ...]
    exp: int
    iat: int
    jti: str
    auth_time: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.exp, UTC)

    @property
    def email_verified(self) -> bool | None:
        """Whether the user's address was verified at issuance (OpenID Connect's claim); None when
        the token does not say (a machine's token) or says it as anything but a JSON boolean."""
        value = self.raw.get("email_verified")
        return value if isinstance(value, bool) else None

    def require(self, scopes: str | Iterable[str]) -> AccessClaims:
        """These claims, if they grant every one of ``scopes``: keyturn's one scope check, used by
        the verifier, every adapter and the server's admin API, so each refuses alike.

        Asking for nothing (``()``) returns at once, allocating nothing: it is every request's case.

        Args:
            scopes: scope names; a string is a space-separated list (RFC 6749 §3.3).

        Raises:
            InsufficientScope: naming every missing scope, in the order asked (RFC 6750 §3.1).
        """
        if not scopes:
            return self
        wanted = scopes if type(scopes) is tuple else scope_names(scopes)
        granted = self.scope
        for name in wanted:
            if name not in granted:
                raise InsufficientScope(tuple(s for s in wanted if s not in granted))
        return self


def scope_names(scopes: str | Iterable[str]) -> tuple[str, ...]:
    """Scope names as a tuple; a string is a space-separated list (RFC 6749 §3.3), not its letters."""
    if isinstance(scopes, str):
        return tuple(scopes.split())
    return scopes if isinstance(scopes, tuple) else tuple(scopes)


def issue_access_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str | list[str],
    subject: str,
    session_id: str,
    client_id: str,
    scope: str,
    now: datetime,
    ttl: timedelta,
    not_after: datetime | None = None,
    auth_time: datetime | None = None,
    email_verified: bool | None = None,
) -> tuple[str, int]:
    """Sign an RFC 9068 access token; returns ``(token, exp)``.

    ``exp`` is ``now + ttl`` rounded up to the second (a token lives at least ``ttl``), capped by
    ``not_after`` (a token never outlives its session). ``email_verified`` is OpenID Connect's
    claim (RFC 9068 §2.2.3.1 lets identity claims in)."""
    iat = int(now.timestamp())
    exp = math.ceil((now + ttl).timestamp())
    if not_after is not None:
        exp = min(exp, int(not_after.timestamp()))
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": exp,
        "iat": iat,
        "jti": uuid.uuid4().hex,
        "sid": session_id,
        "client_id": client_id,
        "scope": scope,
    }
    if auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
    if email_verified is not None:
        claims["email_verified"] = email_verified
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{_header_segment(key.kid, key.alg)}.{payload}"
    token = f"{signing_input}.{_b64encode(key.sign(signing_input.encode()))}"
    return token, exp


def verify_access_token(
    token: object,
    keys: KeyRing,
    *,
    issuer: str,
    audience: str | Sequence[str],
    now: datetime,
    leeway: timedelta = timedelta(0),
    require_sid: bool = True,
) -> AccessClaims:
    """Verify an access token and return its claims; raise on anything amiss. Without
    ``require_sid``, a token may name no session (another issuer's): its ``sid`` is then empty.

    Raises:
        InvalidToken: one of its subclasses, naming the check that failed.
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise MalformedToken("The access token is missing or too long.")
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken()
    kid, alg = _header(parts[0])
    key = keys.get(kid, now)
    if alg != key.alg:  # RFC 8725 §3.1: the key, not the token, says how it is verified
        raise UnsupportedHeader("alg", "The token's algorithm is not the one its key is pinned to.", reason="bad_alg")
    key.verify_signature(f"{parts[0]}.{parts[1]}".encode(), _b64decode(parts[2]))
    return _check_claims(_json_object(parts[1]), issuer, audience, now, leeway, require_sid)


@functools.lru_cache(maxsize=_HEADER_CACHE_SIZE)
def _header(segment: str) -> tuple[str | None, str | None]:
    """The ``kid`` and ``alg`` of a header that passes RFC 8725 §3.11 and RFC 9068 §4 (typ, nothing
    to follow). Cached (bounded): the result depends on ``segment`` alone and every token of one key
    carries the same header; a refusal raises, and is never cached; what depends on the ring (the
    key lookup, the alg pin) runs for every token."""
    header = _json_object(segment)
    extra = sorted(set(header) - _ALLOWED_HEADERS)
    if extra:
        raise UnsupportedHeader(extra[0], reason="forbidden_header")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in TOKEN_TYPES:
        raise UnsupportedHeader("typ", "The token is not an access token (typ must be at+jwt).", reason="bad_typ")
    kid, alg = header.get("kid"), header.get("alg")
    return (kid if isinstance(kid, str) else None), (alg if isinstance(alg, str) else None)


def _check_claims(
    claims: dict[str, Any], issuer: str, audience: str | Sequence[str], now: datetime, leeway: timedelta, sid: bool
) -> AccessClaims:
    """RFC 9068 §2.2 and §4: the required claims, issuer, audience, times and scope."""
    for name in _REQUIRED_STRINGS:
        value = claims.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidClaim(name)
    if claims["iss"] != issuer:
        raise InvalidClaim("iss", "The access token was issued by someone else.")
    aud = _audiences(claims.get("aud"))
    addressed = audience in aud if isinstance(audience, str) else any(a in aud for a in audience)
    if not addressed:
        raise InvalidClaim("aud", "The access token is meant for another audience.")
    exp, iat = _check_times(claims, now.timestamp(), leeway.total_seconds())
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidClaim("scope")
    auth_time = _numeric(claims, "auth_time") if "auth_time" in claims else None
    session = claims.get("sid", None if sid else "")  # absent and not required: empty
    if not isinstance(session, str) or ("sid" in claims and not session):
        raise InvalidClaim("sid")
    return AccessClaims(
        sub=claims["sub"],
        sid=session,
        client_id=claims["client_id"],
        scope=tuple(scope.split()),
        iss=claims["iss"],
        aud=aud,
        exp=int(exp),
        iat=int(iat),
        jti=claims["jti"],
        auth_time=None if auth_time is None else int(auth_time),
        raw=claims,
    )


def _check_times(claims: Mapping[str, Any], ts: float, slack: float) -> tuple[float, float]:
    """``exp``, ``iat`` and ``nbf`` against ``ts`` (RFC 7519 §4.1.4-6); returns ``(exp, iat)``."""
    exp, iat = _numeric(claims, "exp"), _numeric(claims, "iat")
    if ts >= exp + slack:
        raise TokenExpired(datetime.fromtimestamp(exp, UTC))
    if iat > ts + slack:
        raise TokenNotYetValid("iat")
    if "nbf" in claims and _numeric(claims, "nbf") > ts + slack:
        raise TokenNotYetValid("nbf")
    return exp, iat


def _audiences(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InvalidClaim("aud")


def _numeric(claims: Mapping[str, Any], name: str) -> float:
    """A NumericDate (RFC 7519 §2): a JSON number, never a string or a boolean."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < MAX_NUMERIC_DATE:
        raise InvalidClaim(name, f"The access token claim '{name}' must be a number of seconds since 1970.")
    return float(value)


@functools.lru_cache(maxsize=_HEADER_CACHE_SIZE)
def _header_segment(kid: str, alg: str) -> str:
    """The encoded protected header of every token ``kid`` signs (compact, sorted: PyJWT's bytes)."""
    return _b64encode(json.dumps({"alg": alg, "kid": kid, "typ": "at+jwt"}, separators=(",", ":")).encode())


def _b64encode(raw: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(segment: str) -> bytes:
    """Strict, canonical base64url without padding (RFC 7515 §2, RFC 4648 §3.5).

    Refuses other alphabets, padding, and encodings whose unused trailing bits are not zero
    (so every token has exactly one spelling).
    """
    rest = len(segment) % 4
    if rest == 1:
        raise MalformedToken("The access token is not canonical base64url.")
    try:
        # Map base64url onto the standard alphabet and "+", "/", "=" onto a byte that is in
        # neither, so that strict mode refuses everything outside base64url.
        raw = binascii.a2b_base64(segment.encode("ascii").translate(_TO_STANDARD) + _PADDING[rest], strict_mode=True)
    except ValueError:  # binascii.Error, UnicodeEncodeError
        raise MalformedToken("The access token is not canonical base64url.") from None
    if rest and _B64_INDEX[segment[-1]] & (0x0F if rest == 2 else 0x03):
        raise MalformedToken("The access token is not canonical base64url.")
    return raw


def _json_object(segment: str) -> dict[str, Any]:
    try:
        text = _b64decode(segment).decode("utf-8")  # RFC 7515 §2: the JSON is UTF-8
        # JWS JSON has no whitespace around it; skip the decoder's two whitespace scans then.
        value, end = _DECODER.raw_decode(text) if text[:1] == "{" else (None, -1)
        if end != len(text):  # whitespace, trailing data, not an object: the full decoder decides
            value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        raise MalformedToken("The access token is not valid JSON.") from None
    if not isinstance(value, dict):
        raise MalformedToken()
    return value


_DECODER = strict_decoder(
    duplicate=lambda: MalformedToken("The access token has a duplicate member."),
    constant=lambda _: MalformedToken("The access token is not valid JSON."),
)
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING = (b"", b"", b"==", b"=")  # by length % 4
_B64_INDEX = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}

"""Signing keys and the key ring: newest active key signs, every published key verifies.

The algorithm is fixed per key when it is made (RFC 8725 §3.1): a token never chooses how it is
verified. Private parts are sealed at rest with AES-GCM under a key derived from the master secret,
bound to the key's ``kid``. Rotation needs no background job: a key is published from creation,
signs from ``activates_at``, and stays published until every token it could have signed has expired.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import Algorithm, get_default_algorithms

from .errors import BadSignature, ConfigurationError, SigningKeyError, UnknownKey
from .masterkey import MasterKey

__all__ = [
    "ALGORITHMS", "KeyRing", "KeySource", "SigningKey", "SyncKeySource", "generate_key", "open_private_key",
    "seal_private_key",
]  # fmt: skip

Alg = Literal["ES256", "EdDSA", "RS256"]
ALGORITHMS: Mapping[str, Algorithm] = {
    name: alg for name, alg in get_default_algorithms().items() if name in ("ES256", "EdDSA", "RS256")
}
_ALG_NAMES: Mapping[str, Alg] = {"ES256": "ES256", "EdDSA": "EdDSA", "RS256": "RS256"}
_IMPLIED_ALGS = {"P-256": "ES256", "Ed25519": "EdDSA", "RSA": "RS256"}  # a JWK's `alg` is optional (RFC 7517 §4.4)
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
_SEAL_LABEL = "keyturn/v1/signing-key-encryption"
_SEAL_VERSION = b"\x01"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key: its ``kid``, fixed algorithm, public part and (server side) private part."""

    kid: str
    alg: Alg
    public_key: Any
    private_key: Any = None
    created_at: datetime | None = None
    activates_at: datetime | None = None
    retired_at: datetime | None = None

    @property
    def algorithm(self) -> Algorithm:
        return ALGORITHMS[self.alg]

    def verify_signature(self, message: bytes, signature: bytes) -> None:
        """Check a JWS signature (RFC 7518 §3.3/§3.4, RFC 8037 §3.1) over ``message`` with this key.

        Calls ``cryptography`` directly rather than PyJWT's algorithm objects, which rebuild
        their padding and hash objects and re-check the key's type on every call.

        Raises:
            BadSignature: the signature is not this key's over ``message`` (any length, any bytes),
                or is the high-S twin of an ES256 signature.
        """
        try:
            _VERIFY[self.alg](self.public_key, message, signature)
        except InvalidSignature:
            raise BadSignature(self.kid) from None

    def sign(self, message: bytes) -> bytes:
        """The JWS signature (RFC 7518 §3.3/§3.4, RFC 8037 §3.1) of ``message`` with the private part.

        An ES256 signature is always low-S (``s <= n/2``), the only form
        :meth:`verify_signature` accepts, so a token has exactly one valid signature.
        """
        return _SIGN[self.alg](self.private_key, message)

    def public_jwk(self) -> dict[str, Any]:
        """The RFC 7517 JWK of the public part only, with ``kid``, ``alg`` and ``use``."""
        jwk = dict(self.algorithm.to_jwk(self.public_key, as_dict=True))
        public = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        """A verification-only key from a public JWK, whose ``alg`` (or the one its key type implies) we allow.

        Raises:
            ConfigurationError: the JWK is not a usable public key.
        """
        implied = _IMPLIED_ALGS.get(str(jwk.get("crv") or jwk.get("kty")))
        alg: Alg | None = _ALG_NAMES.get(str(jwk.get("alg", implied)))
        if alg is None or not isinstance(jwk.get("kid"), str):
            raise ConfigurationError("jwks", "a key has no supported 'alg' or no 'kid'")
        if any(member in jwk for member in ("d", "p", "q", "dp", "dq", "qi", "oth", "k")):
            raise ConfigurationError("jwks", "a published key must not contain private members")
        try:
            public = ALGORITHMS[alg].from_jwk(dict(jwk))
        except Exception as exc:  # PyJWT raises several types for a bad key
            raise ConfigurationError("jwks", f"key {jwk['kid']!r} is not a valid {alg} key") from exc
        if not _fits(alg, public):
            raise ConfigurationError("jwks", f"key {jwk['kid']!r} does not meet RFC 7518's rules for {alg}")
        return cls(kid=jwk["kid"], alg=alg, public_key=public)


def _verify_es256(public: ec.EllipticCurvePublicKey, message: bytes, signature: bytes) -> None:
    # RFC 7518 §3.4: the JWS form is R || S, 32 bytes each; cryptography wants DER.
    if len(signature) != 64:
        raise InvalidSignature
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    # SEC 1 §4.1.4 step 1 wants r and s in [1, n-1]. And (r, n - s) verifies whenever (r, s) does, so
    # only the low-S half is accepted: a token has one signature, not a twin an attacker can make.
    if not (0 < r < _P256_N and 0 < s <= _P256_HALF_N):
        raise InvalidSignature
    public.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)


def _sign_es256(private: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    r, s = decode_dss_signature(private.sign(message, _ECDSA_SHA256))
    # OpenSSL returns s from either half of [1, n-1]; issue the low-S one of the twins (as BIP 62 does).
    return r.to_bytes(32, "big") + min(s, _P256_N - s).to_bytes(32, "big")


# Stateless parameter objects, made once: building them per call costs more than the maths of a
# fast verification.
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
# RS256 and EdDSA need no more than cryptography's call (ES256 converts the signature's form).
_VERIFY: Mapping[str, Callable[[Any, bytes, bytes], None]] = {
    "ES256": _verify_es256,
    "RS256": lambda public, message, signature: public.verify(signature, message, _PKCS1V15, _SHA256),
    "EdDSA": lambda public, message, signature: public.verify(signature, message),
}
_SIGN: Mapping[str, Callable[[Any, bytes], bytes]] = {
    "ES256": _sign_es256,
    "RS256": lambda private, message: private.sign(message, _PKCS1V15, _SHA256),
    "EdDSA": lambda private, message: private.sign(message),
}
# The order n of P-256's base point (SEC 2 §2.4.2); n is odd, so exactly one of s and n - s is <= n // 2.
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_N = _P256_N // 2


def _fits(alg: Alg, public: Any) -> bool:
    """RFC 7518 §3.3/§3.4 and RFC 8037: ES256 needs P-256, RS256 at least 2048 bits."""
    if alg == "ES256":
        return isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1)
    if alg == "RS256":
        return isinstance(public, rsa.RSAPublicKey) and public.key_size >= 2048
    return isinstance(public, ed25519.Ed25519PublicKey)


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url), used as the ``kid``."""
    members = {m: jwk[m] for m in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def generate_key(alg: Alg, *, now: datetime, activates_at: datetime | None = None) -> SigningKey:
    """Make a new key pair for ``alg``; it signs from ``activates_at`` (default ``now``)."""
    private: Any
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    key = SigningKey(kid="", alg=alg, public_key=private.public_key(), private_key=private, created_at=now)
    return replace(key, kid=thumbprint(key.public_jwk()), activates_at=activates_at or now)


def seal_private_key(key: SigningKey, master: MasterKey) -> bytes:
    """Encrypt the private part (PKCS#8 DER) with AES-GCM, bound to the ``kid``."""
    der = key.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    nonce = os.urandom(12)
    return _SEAL_VERSION + nonce + AESGCM(master.derive(_SEAL_LABEL)).encrypt(nonce, der, key.kid.encode())


def open_private_key(sealed: bytes, kid: str, master: MasterKey) -> Any:
    """Decrypt a private part sealed by :func:`seal_private_key`.

    Raises:
        KeyturnError: the blob is damaged, or the master secret is not the one it was sealed under.
    """
    if sealed[:1] != _SEAL_VERSION:
        raise SigningKeyError("unknown signing-key seal version", reason="key_seal_version")
    try:
        der = AESGCM(master.derive(_SEAL_LABEL)).decrypt(sealed[1:13], sealed[13:], kid.encode())
    except Exception:
        raise SigningKeyError(
            f"signing key {kid} cannot be decrypted: is KEYTURN_SECRET the one it was made with?",
            reason="key_seal_mismatch",
        ) from None
    return serialization.load_der_private_key(der, password=None)


class KeyRing:
    """Keys by ``kid``: the newest active key signs; every published key verifies.

    A key is published from creation until ``token_ttl + leeway`` after a newer key
    took over signing (or until it is retired by hand).
    """

    def __init__(self, keys: Iterable[SigningKey], *, token_ttl: timedelta, leeway: timedelta) -> None:
        self._keys = sorted(keys, key=_order)
        self._by_kid = {k.kid: k for k in self._keys}
        # The keys after each one, computed once: looking a key up is on every verification's path.
        self._newer = {k.kid: tuple(self._keys[i + 1 :]) for i, k in enumerate(self._keys)}
        self._keep = token_ttl + leeway

    def __len__(self) -> int:
        return len(self._keys)

    def all(self) -> list[SigningKey]:
        """Every key in the ring, published or not, newest first."""
        return list(reversed(self._keys))

    def __contains__(self, kid: object) -> bool:
        return isinstance(kid, str) and kid in self._by_kid

    def get(self, kid: object, now: datetime | None = None) -> SigningKey:
        """The key for ``kid``, if it is published at ``now`` (any known key when ``now`` is None).

        Raises:
            UnknownKey: no such key, or it is retired.
        """
        key = self._by_kid.get(kid) if isinstance(kid, str) else None
        if key is None or (now is not None and not self._is_published(key, now)):
            raise UnknownKey(kid if isinstance(kid, str) else None)
        return key

    def signer(self, now: datetime) -> SigningKey:
        """The newest key that is active at ``now`` and holds a private part.

        Raises:
            SigningKeyError: no key can sign yet.
        """
        for key in reversed(self._keys):
            if key.private_key is not None and key.retired_at is None and _active(key, now):
                return key
        raise SigningKeyError("no signing key is active", reason="no_signing_key")

    def published(self, now: datetime) -> list[SigningKey]:
        """Every key a verifier must know at ``now``, newest first."""
        return [k for k in reversed(self._keys) if self._is_published(k, now)]

    def jwks(self, now: datetime) -> dict[str, list[dict[str, Any]]]:
        """The JWK Set of the published keys (public members only)."""
        return {"keys": [k.public_jwk() for k in self.published(now)]}

    def _is_published(self, key: SigningKey, now: datetime) -> bool:
        if key.retired_at is not None and key.retired_at <= now:
            return False
        superseded = self._superseded_at(key, now)
        return superseded is None or now < superseded + self._keep

    def _superseded_at(self, key: SigningKey, now: datetime) -> datetime | None:
        """When a newer active key took over signing from ``key``, if one has."""
        newer = self._newer[key.kid]
        if not newer:  # the newest key, the one most tokens name
            return None
        starts = [k.activates_at for k in newer if k.retired_at is None and _active(k, now) and k.activates_at]
        return min(starts) if starts else None


def _order(key: SigningKey) -> tuple[float, float, str]:
    def stamp(at: datetime | None) -> float:
        return at.timestamp() if at else 0.0

    return (stamp(key.activates_at), stamp(key.created_at), key.kid)


def _active(key: SigningKey, now: datetime) -> bool:
    return key.activates_at is None or key.activates_at <= now


class KeySource(Protocol):
    """Where verification gets its ring: the server's store (``KeyManager``) or a JWKS (``JwksCache``).
    ``kid`` names a key a token asked for and the last ring lacked: look again (rate-limited)."""

    async def ring_async(self, now: datetime, kid: object = None) -> KeyRing:
        """The keys to verify with at ``now``."""


class SyncKeySource(KeySource, Protocol):
    """A key source that can also answer without an event loop (the JWKS cache, for sync views)."""

    def ring(self, now: datetime, kid: object = None) -> KeyRing:
        """The keys to verify with at ``now``."""

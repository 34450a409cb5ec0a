"""Integration tests of interoperability: access tokens from a real keyturn server verify with
PyJWT's JWKS client and with joserfc, independent JOSE implementations, using only the published
JWKS; and keyturn's own verifier refuses tokens meant for someone else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from keyturn.core.errors import InvalidClaim, UnknownKey
from keyturn.verify import Verifier
from tests.servers import Server, keyturn_server

pytestmark = pytest.mark.server

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module", params=["ES256", "EdDSA", "RS256"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with keyturn_server(tmp_path_factory.mktemp("interop"), "--dev", signing_alg=request.param) as running:
        yield running


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    creds = {"username": "interop", "password": PASSWORD}
    httpx.post(f"{server.url}/v1/auth/register", json=creds)
    value: str = httpx.post(f"{server.url}/v1/auth/login", json=creds).json()["access_token"]
    return value


def test_pyjwt_jwks_client_verifies_keyturn_tokens(server: Server, token: str) -> None:
    """PyJWT finds the key by kid in the JWKS and checks signature, iss, aud and exp."""
    signing_key = jwt.PyJWKClient(f"{server.url}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token, signing_key, algorithms=[signing_key.algorithm_name], audience=server.url, issuer=server.url,
        options={"require": ["exp", "iat", "sub", "jti"]},
    )  # fmt: skip
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    assert claims["client_id"] == "keyturn"


# joserfc warns that RFC 9864 deprecates "EdDSA" for "Ed25519"; PyJWT does not know "Ed25519" yet.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_joserfc_verifies_keyturn_tokens(server: Server, token: str) -> None:
    """joserfc imports the JWK Set and validates the token and its claims."""
    keys = KeySet.import_key_set(httpx.get(f"{server.url}/.well-known/jwks.json").json())
    header_alg = jwt.get_unverified_header(token)["alg"]
    decoded = jose_jwt.decode(token, keys, algorithms=[header_alg])
    registry = JWTClaimsRegistry(
        iss={"essential": True, "value": server.url}, aud={"essential": True, "value": server.url}
    )
    registry.validate(decoded.claims)
    assert decoded.header["typ"] == "at+jwt"


def test_keyturn_verifier_discovers_keys_and_verifies(server: Server, token: str) -> None:
    """keyturn's own verifier, given only the issuer, finds the JWKS through RFC 8414 metadata."""
    claims = Verifier(issuer=server.url, audience=server.url).verify(token)
    assert claims.client_id == "keyturn"


def test_keyturn_verifier_refuses_another_audience_and_issuer(server: Server, token: str) -> None:
    """A resource server expecting another audience, or trusting another issuer name, refuses."""
    with pytest.raises(InvalidClaim) as refused:
        Verifier(issuer=server.url, audience="https://billing.example").verify(token)
    assert refused.value.claim == "aud"
    impostor = Verifier(
        issuer="https://auth.example", audience=server.url, jwks_url=f"{server.url}/.well-known/jwks.json"
    )
    with pytest.raises(InvalidClaim) as refused:
        impostor.verify(token)
    assert refused.value.claim == "iss"


def test_keyturn_verifier_refuses_another_instance(
    server: Server, token: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Another keyturn instance has other keys: its JWKS does not verify this token."""
    with keyturn_server(tmp_path_factory.mktemp("other2"), "--dev") as other:
        verifier = Verifier(issuer=server.url, audience=server.url, jwks_url=f"{other.url}/.well-known/jwks.json")
        with pytest.raises(UnknownKey) as refused:
            verifier.verify(token)
        assert refused.value.kid == jwt.get_unverified_header(token)["kid"]

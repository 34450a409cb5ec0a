"""Unit tests (no I/O) of keyturn.core.clients: which client ids and scopes may be registered,
narrowing a grant's scope, secrets and their MACs, and how a request presents its client
(RFC 6749 §2.3.1), including its refusals and its worst-case inputs."""

from __future__ import annotations

import base64
import re

import pytest

from keyturn.core.clients import (
    NONE,
    SECRET_BASIC,
    SECRET_POST,
    Presented,
    SecretMac,
    check_client_id,
    narrowed,
    new_secret,
    presented_client,
    scope_list,
)
from keyturn.core.errors import InvalidClient, InvalidRequest, InvalidScope

KEY = b"k" * 32
MEGABYTE = 1024 * 1024
THIRD = MEGABYTE // 3  # a megabyte of three-character escapes


def basic(raw: str | bytes) -> str:
    """An ``Authorization: Basic`` header carrying ``raw`` (already form-encoded, as a client sends it)."""
    data = raw if isinstance(raw, bytes) else raw.encode()
    return "Basic " + base64.b64encode(data).decode()


# --- check_client_id -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["abc", "a" * 64, "billing-api", "svc.v2_x", "0ab", "reports.example.com", "a--", "123"],
)
def test_an_operators_client_id_is_accepted_as_is(value: str) -> None:
    """3 to 64 of a-z 0-9 . _ -, starting with a letter or digit, come back unchanged."""
    assert check_client_id(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "ab", "a" * 65, "Abc", "ABC", "-ab", ".ab", "_ab", "a b", "abc/", "ab:c", "\u00e1bc", "abc\n", " abc",
     "ab\x00c", "abc%", "ab+c"],
    ids=["empty", "2-chars", "65-chars", "capital", "upper", "leading-dash", "leading-dot", "leading-underscore",
         "space", "slash", "colon", "non-ascii", "trailing-newline", "leading-space", "nul", "percent", "plus"],
)  # fmt: skip
def test_a_client_id_out_of_bounds_or_charset_is_refused(value: str) -> None:
    """Anything outside the bounds or the character set: ValueError naming the rule."""
    with pytest.raises(ValueError, match="3 to 64 characters"):
        check_client_id(value)


@pytest.mark.parametrize(
    "value",
    [
        "123e4567-e89b-12d3-a456-426614174000",
        "123e4567e89b12d3a456426614174000",
        "00000000-0000-0000-0000-000000000000",
    ],
    ids=["hyphenated", "32-hex", "nil"],
)
def test_a_client_id_that_is_a_uuid_is_refused(value: str) -> None:
    """A UUID in any spelling the charset allows would look like a user's subject: refused as such."""
    with pytest.raises(ValueError, match="may not be a UUID"):
        check_client_id(value)


# --- scope_list and narrowed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [("", ""), ("read", "read"), ("read  write\tread", "read write"), (" b a b ", "b a"), ("x" * 64, "x" * 64),
     ("a!#[]~", "a!#[]~")],
)  # fmt: skip
def test_a_scope_list_is_stored_deduplicated_in_order(value: str, stored: str) -> None:
    """Whitespace-separated scope tokens, each once, first occurrence first, single-spaced."""
    assert scope_list(value) == stored


@pytest.mark.parametrize(
    "value",
    ['read "write"', "a\\b", "x" * 65, "r\u00e9ad", "read \x7f"],
    ids=["quote", "backslash", "65", "e-acute", "del"],
)
def test_a_name_that_is_not_an_rfc6749_scope_token_is_refused(value: str) -> None:
    """RFC 6749 §3.3: no '"', no '\\', printable ASCII only, at most 64 characters."""
    with pytest.raises(ValueError, match="is not a scope name"):
        scope_list(value)


def test_a_long_bad_scope_is_named_in_short() -> None:
    """The message quotes at most 64 characters of the refused name."""
    with pytest.raises(ValueError, match="is not a scope name") as refused:
        scope_list("\u00e9" * 10_000)
    assert len(str(refused.value)) < 120


@pytest.mark.parametrize(
    ("granted", "wanted", "scope"),
    [("read write", ("write",), "write"), ("read write", ("write", "read"), "write read"),
     ("read", ("read", "read"), "read"), ("read write", (), "")],
)  # fmt: skip
def test_narrowing_keeps_what_was_asked_for_out_of_the_grant(granted: str, wanted: tuple[str, ...], scope: str) -> None:
    """The token's scope is what was asked for, each once, in the order asked."""
    assert narrowed(granted, wanted) == scope


def test_narrowing_beyond_the_grant_is_invalid_scope_naming_what_is_missing() -> None:
    """Every scope asked for but not granted is named; a granted one is not."""
    with pytest.raises(InvalidScope) as refused:
        narrowed("read", ("read", "admin", "write"))
    assert (refused.value.reason, refused.value.description) == ("invalid_scope", "Not granted: admin write.")


def test_a_scope_is_never_matched_as_a_substring() -> None:
    """'rea' is not granted by 'read', nor 'read' by 'read:all'."""
    for granted, wanted in (("read", "rea"), ("read:all", "read")):
        with pytest.raises(InvalidScope):
            narrowed(granted, (wanted,))


# --- new_secret and SecretMac --------------------------------------------------------------------


def test_a_new_secret_is_prefixed_256_random_bits_never_repeated() -> None:
    """kt_cs_ then 43 URL-safe base64 characters (32 bytes); a thousand are all different."""
    made = [new_secret() for _ in range(1000)]
    assert all(re.fullmatch(r"kt_cs_[A-Za-z0-9_-]{43}", s) for s in made), made[0]
    assert len(set(made)) == len(made)


def test_a_secret_matches_its_own_mac_only() -> None:
    """The MAC of a secret accepts it, and refuses any other string (one character more or less, or changed)."""
    mac, secret = SecretMac(KEY), new_secret()
    stored = mac.digest(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert mac.matches(stored, secret)
    for wrong in (secret + "x", secret[:-1], secret[:-1] + ("A" if secret[-1] != "A" else "B"), "", secret.upper()):
        assert not mac.matches(stored, wrong), wrong


def test_nothing_stored_matches_nothing() -> None:
    """No stored MAC (an unknown or public client) is False for any secret, the empty one and the
    MAC of nothing included, never an error."""
    mac = SecretMac(KEY)
    for presented in ("", new_secret(), "0" * 64, mac.digest("")):
        assert mac.matches(None, presented) is False


def test_a_stored_value_of_another_shape_matches_nothing() -> None:
    """An empty or truncated stored value refuses, even the secret it was cut from."""
    mac, secret = SecretMac(KEY), new_secret()
    for stored in ("", mac.digest(secret)[:32], mac.digest(secret).upper()):
        assert mac.matches(stored, secret) is False


def test_the_same_secret_under_another_key_has_another_mac() -> None:
    """The MAC is keyed: another deployment's (another master secret's) MAC neither equals nor matches."""
    secret = new_secret()
    mine, theirs = SecretMac(KEY), SecretMac(b"t" * 32)
    assert mine.digest(secret) != theirs.digest(secret)
    assert not mine.matches(theirs.digest(secret), secret)


def test_the_macs_repr_hides_its_key() -> None:
    """A SecretMac in a log line or a traceback shows no key material."""
    assert "k" * 8 not in repr(SecretMac(KEY))


def test_a_secret_with_a_lone_surrogate_is_macd_not_an_error() -> None:
    """A form can decode to a lone surrogate; it is a wrong secret, not a crash."""
    mac = SecretMac(KEY)
    assert not mac.matches(mac.digest(new_secret()), "\ud800")


# --- presented_client ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "form", "presented"),
    [
        (None, {}, Presented(None, None, NONE)),
        (None, {"client_id": "keyturn"}, Presented("keyturn", None, NONE)),
        (None, {"client_id": "svc", "client_secret": "s3"}, Presented("svc", "s3", SECRET_POST)),
        (None, {"client_secret": "s3"}, Presented(None, "s3", SECRET_POST)),
        (basic("svc:s3"), {}, Presented("svc", "s3", SECRET_BASIC)),
        (basic("svc:s3"), {"client_id": "svc"}, Presented("svc", "s3", SECRET_BASIC)),
        ("basic " + base64.b64encode(b"svc:s3").decode(), {}, Presented("svc", "s3", SECRET_BASIC)),
        ("  Basic   " + base64.b64encode(b"svc:s3").decode() + "  ", {}, Presented("svc", "s3", SECRET_BASIC)),
        (basic("keyturn:"), {}, Presented("keyturn", None, NONE)),
        (basic("svc:a:b"), {}, Presented("svc", "a:b", SECRET_BASIC)),
    ],
    ids=["nothing", "bare-client-id", "post", "post-without-id", "basic", "basic-and-same-id", "lowercase-scheme",
         "padded", "basic-without-password", "colon-in-secret"],
)  # fmt: skip
def test_a_request_presents_one_client_by_one_method(
    authorization: str | None, form: dict[str, str], presented: Presented
) -> None:
    """No credentials is the public method; client_secret in the body is client_secret_post;
    HTTP Basic (scheme case-insensitive) is client_secret_basic, split at the first colon, except
    with an empty password, which names a public client (as an empty client_secret would, §3.2)."""
    assert presented_client(authorization, form) == presented


@pytest.mark.parametrize(
    ("raw", "client_id", "secret"),
    [("a%3Ab:s", "a:b", "s"), ("svc:a+b", "svc", "a b"), ("svc:a%2Bb", "svc", "a+b"), ("svc:%25", "svc", "%"),
     ("s%C3%A9rvice:x%3Ay", "s\u00e9rvice", "x:y"), ("svc:%zz", "svc", "%zz")],
)  # fmt: skip
def test_basic_credentials_are_form_decoded(raw: str, client_id: str, secret: str) -> None:
    """RFC 6749 §2.3.1: the id and secret are form-encoded before Basic: %XX is a byte of UTF-8 and
    '+' a space, so an id may contain a colon; an invalid escape stays as it is."""
    assert presented_client(basic(raw), {}) == Presented(client_id, secret, SECRET_BASIC)


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!", "Basic c3Zj:czM=", "Basic c3ZjOnM", "Basic", "Basic ", basic("no-colon"), basic(":secret"),
     basic(b"\xff\xfe:s"), "Basic c3Zj OnMz"],
    ids=["not-base64", "colon-in-base64", "bad-length", "scheme-only", "scheme-and-space", "no-colon", "empty-id",
         "not-utf8", "space-inside"],
)  # fmt: skip
def test_malformed_basic_credentials_are_invalid_client(authorization: str) -> None:
    """Anything that is not base64 of UTF-8 "id:secret" with a non-empty id: malformed_credentials."""
    with pytest.raises(InvalidClient) as refused:
        presented_client(authorization, {})
    assert refused.value.reason == "malformed_credentials"
    assert refused.value.description == "The Basic credentials are malformed."


@pytest.mark.parametrize("authorization", ["Bearer abc", "Digest username=x", "abc", "", "Basicc3ZjOnMz"])
def test_an_authorization_scheme_other_than_basic_is_unsupported(authorization: str) -> None:
    """A Bearer token (or any other scheme) does not authenticate a client: unsupported_method."""
    with pytest.raises(InvalidClient) as refused:
        presented_client(authorization, {"client_id": "svc"})
    assert refused.value.reason == "unsupported_method"


def test_basic_and_a_body_secret_together_are_two_methods() -> None:
    """RFC 6749 §2.3: a client uses one method per request; both is invalid_request two_methods."""
    with pytest.raises(InvalidRequest) as refused:
        presented_client(basic("svc:s3"), {"client_id": "svc", "client_secret": "s3"})
    assert (refused.value.reason, refused.value.description) == (
        "two_methods", "Use one client authentication method, not both.",
    )  # fmt: skip


def test_a_body_client_id_other_than_basics_is_a_mismatch() -> None:
    """A client_id parameter naming another client than the Basic header: client_id_mismatch."""
    with pytest.raises(InvalidRequest) as refused:
        presented_client(basic("svc:s3"), {"client_id": "other"})
    assert refused.value.reason == "client_id_mismatch"


@pytest.mark.parametrize("authorization", [None, basic("svc:s3")])
@pytest.mark.parametrize("field", ["client_assertion", "client_assertion_type"])
def test_a_client_assertion_is_not_supported(authorization: str | None, field: str) -> None:
    """private_key_jwt (RFC 7523) is refused by name, whatever else the request carries."""
    with pytest.raises(InvalidClient) as refused:
        presented_client(authorization, {field: "eyJ.e.s", "client_id": "svc"})
    assert (refused.value.reason, refused.value.description) == (
        "unsupported_method", "Client assertions (private_key_jwt) are not supported.",
    )  # fmt: skip


def test_the_presented_secret_is_not_in_its_repr() -> None:
    """What a request presented can be logged: its repr names the client and method, never the secret."""
    assert "s3cret" not in repr(presented_client(basic("svc:s3cret"), {}))


# --- worst cases ---------------------------------------------------------------------------------
# Each is one call on a megabyte header (the in-process edge bounds headers, but the core must not
# rely on it): it returns or refuses, by linear steps only (partition, base64, split, unquote). No
# timing is asserted; a quadratic step would cost minutes and show in the suite's time.


@pytest.mark.parametrize(
    ("raw", "client_id", "secret"),
    [
        ("a" * MEGABYTE + ":" + "b" * MEGABYTE, "a" * MEGABYTE, "b" * MEGABYTE),
        ("%3A" * THIRD + ":" + "+" * MEGABYTE, ":" * THIRD, " " * MEGABYTE),
        ("a:" + "%" * MEGABYTE, "a", "%" * MEGABYTE),
        ("a:" + "%C3" * THIRD, "a", "\ufffd" * THIRD),
        ("a:" + ":" * MEGABYTE, "a", ":" * MEGABYTE),
    ],
    ids=["plain", "escapes-and-pluses", "lone-percents", "broken-utf8", "colons"],
)
def test_a_megabyte_of_basic_credentials_is_read_in_one_pass(raw: str, client_id: str, secret: str) -> None:
    """The worst inputs for the form-decoding and the split come back decoded, whole."""
    found = presented_client(basic(raw), {})
    assert (found.client_id, found.secret, found.method) == (client_id, secret, SECRET_BASIC)


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Basic " + "=" * MEGABYTE, "malformed_credentials"),
        ("Basic " + "A" * (MEGABYTE + 1), "malformed_credentials"),
        ("Basic " + " " * MEGABYTE + "x", "malformed_credentials"),
        ("Basic " + base64.b64encode(b"a" * MEGABYTE).decode(), "malformed_credentials"),
        ("Bearer " + "a" * MEGABYTE, "unsupported_method"),
        (" " * MEGABYTE, "unsupported_method"),
        ("B" * MEGABYTE, "unsupported_method"),
    ],
    ids=["padding", "bad-length", "spaces", "no-colon", "bearer", "blank", "one-word"],
)
def test_a_megabyte_header_that_is_refused_is_refused_in_one_pass(authorization: str, reason: str) -> None:
    """A huge malformed header, or another scheme, is refused with its reason, in one call."""
    with pytest.raises(InvalidClient) as refused:
        presented_client(authorization, {})
    assert refused.value.reason == reason
    assert len(refused.value.description) < 100

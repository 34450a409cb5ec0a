"""Unit tests of keyturn.core.emails (no I/O): which addresses are accepted, the form shown and
the key that makes one address one account, and that a refusal says why without echoing the input."""

from __future__ import annotations

import pytest

from keyturn.core.emails import MAX_EMAIL_LENGTH, normalize_email
from keyturn.core.errors import InvalidRequest

LOCAL_64 = "l" * 64
DOMAIN_189 = f"{'a' * 63}.{'b' * 63}.{'c' * 57}.com"  # 63 + 1 + 63 + 1 + 57 + 1 + 3 = 189 characters
# Every refusal is one of these fixed sentences: none repeats what was sent.
REFUSALS = {
    "The email address must be a string of at most 254 characters.",
    "The email address must look like name@example.com.",
    "The part of the email address before @ is not one we accept.",
    "The domain of the email address is not valid.",
    "The email address must be at most 254 characters.",
}


@pytest.mark.parametrize(
    ("given", "display", "key"),
    [
        ("alice@example.com", "alice@example.com", "alice@example.com"),
        ("Alice@Example.COM", "Alice@example.com", "alice@example.com"),
        ("Jose\u0301@example.com", "Jos\u00e9@example.com", "jos\u00e9@example.com"),
        ("\u00c9LODIE@example.com", "\u00c9LODIE@example.com", "\u00e9lodie@example.com"),
        ("user@b\u00fccher.example", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
        ("user@B\u00dcCHER.Example", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
        ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
        ("a@\u4f8b\u3048.\u30c6\u30b9\u30c8", "a@xn--r8jz45g.xn--zckzah", "a@xn--r8jz45g.xn--zckzah"),
        ("  bob@example.com \t\n", "bob@example.com", "bob@example.com"),
        ("\u00a0bob@example.com\u00a0", "bob@example.com", "bob@example.com"),
        ("first.last@example.com", "first.last@example.com", "first.last@example.com"),
        ("a+tag@example.com", "a+tag@example.com", "a+tag@example.com"),
        ("o'brien&co@example.com", "o'brien&co@example.com", "o'brien&co@example.com"),
        ("a@my-host.sub-domain.example", "a@my-host.sub-domain.example", "a@my-host.sub-domain.example"),
        ("a@x1.io", "a@x1.io", "a@x1.io"),
        (f"{LOCAL_64}@example.com", f"{LOCAL_64}@example.com", f"{LOCAL_64}@example.com"),
        (f"{LOCAL_64}@{DOMAIN_189}", f"{LOCAL_64}@{DOMAIN_189}", f"{LOCAL_64}@{DOMAIN_189}"),
        (f"a@{'d' * 63}.com", f"a@{'d' * 63}.com", f"a@{'d' * 63}.com"),
    ],
    ids=lambda value: value if len(value) < 40 else f"{value[:20]}...({len(value)})",
)
def test_accepted_addresses_and_their_display_and_key(given: str, display: str, key: str) -> None:
    """Stripped, NFC, the domain in lower case and IDNA-encoded; the key case-folds the local part too."""
    assert normalize_email(given) == (display, key)


@pytest.mark.parametrize(
    "given",
    [
        "",
        "example.com",
        "@example.com",
        "alice@",
        "alice@@example.com",
        "a@b@example.com",
        ".alice@example.com",
        "alice.@example.com",
        "al..ice@example.com",
        '"alice"@example.com',
        "a<b@example.com",
        "a>b@example.com",
        "<alice@example.com>",
        "(comment)alice@example.com",
        "a[b]@example.com",
        "a,b@example.com",
        "a;b@example.com",
        "a:b@example.com",
        "a\\b@example.com",
        "a b@example.com",
        "a\tb@example.com",
        "a\u00a0b@example.com",
        "a\x00b@example.com",
        "a\x7fb@example.com",
        "a\u200bb@example.com",
        "a\u202eb@example.com",
        "a\nb@example.com",
        "alice@localhost",
        "alice@com",
        "alice@[127.0.0.1]",
        "alice@127.0.0.1]",
        "alice@example..com",
        "alice@.example.com",
        "alice@example.com.",
        "alice@-example.com",
        "alice@example-.com",
        "alice@ex_ample.com",
        "alice@exa mple.com",
        "alice@exam!ple.com",
        f"alice@{'d' * 64}.com",
        f"{'l' * 65}@example.com",
        f"{LOCAL_64}@{DOMAIN_189}x",
        f"{LOCAL_64}x@{DOMAIN_189}",
        "x" * (4 * MAX_EMAIL_LENGTH + 1),
    ],
    ids=lambda value: repr(value) if len(value) < 40 else f"{value[:20]!r}...({len(value)})",
)
def test_refused_addresses_say_bad_email_without_echoing_them(given: str) -> None:
    """Anything but name@two.or-more.labels within RFC 5321's bounds is refused with reason bad_email,
    and the description never repeats what was sent."""
    with pytest.raises(InvalidRequest) as caught:
        normalize_email(given)
    assert caught.value.reason == "bad_email"
    assert caught.value.code == "invalid_request"
    assert caught.value.description in REFUSALS


def test_the_bounds_are_64_before_the_at_and_254_in_all() -> None:
    """The longest accepted address is exactly 254 characters, and its local part exactly 64."""
    display, _ = normalize_email(f"{LOCAL_64}@{DOMAIN_189}")
    assert len(display) == MAX_EMAIL_LENGTH == 254
    assert len(display.partition("@")[0]) == 64


def test_the_254_bound_counts_the_encoded_domain() -> None:
    """An internationalized domain is measured as sent (its xn-- form), not as typed."""
    typed = f"{LOCAL_64}@{'a' * 63}.{'b' * 63}.{'c' * 50}.b\u00fccher"  # 250 typed, 257 encoded characters
    assert len(typed) < MAX_EMAIL_LENGTH
    with pytest.raises(InvalidRequest) as caught:
        normalize_email(typed)
    assert caught.value.description == "The email address must be at most 254 characters."


@pytest.mark.parametrize("given", [None, 42, b"alice@example.com", ["alice@example.com"], {"email": "a@b.co"}])
def test_only_strings_are_addresses(given: object) -> None:
    """A JSON number, list or object (or bytes) is refused like a malformed address."""
    with pytest.raises(InvalidRequest) as caught:
        normalize_email(given)
    assert caught.value.reason == "bad_email"


def test_case_variants_share_one_key_and_keep_their_own_display() -> None:
    """Alice@…, ALICE@… and alice@… are one account (one key); each is shown as it was typed."""
    variants = ["Alice@Example.com", "ALICE@EXAMPLE.COM", "alice@example.com", " aLiCe@eXaMpLe.CoM "]
    results = [normalize_email(v) for v in variants]
    assert {key for _, key in results} == {"alice@example.com"}
    assert [display for display, _ in results] == [
        "Alice@example.com",
        "ALICE@example.com",
        "alice@example.com",
        "aLiCe@example.com",
    ]
    assert normalize_email("\u00c9lodie@example.com")[1] == normalize_email("\u00e9LODIE@EXAMPLE.COM")[1]


def test_composed_and_decomposed_forms_share_one_key() -> None:
    """An accent typed as one code point or as a letter and a combining mark is one address."""
    assert normalize_email("jos\u00e9@example.com") == normalize_email("jose\u0301@example.com")


def test_distinct_addresses_have_distinct_keys() -> None:
    """Folding stops at case: dots, plus tags and domains still tell addresses apart."""
    keys = {
        normalize_email(v)[1]
        for v in ("alice@example.com", "a.lice@example.com", "alice+x@example.com", "alice@example.org")
    }
    assert len(keys) == 4


def test_a_megabyte_of_input_is_refused_in_one_call() -> None:
    """A 1 MB value (the worst a body could carry) is refused at once, before any per-character work."""
    for worst in ("a" * 1_000_000 + "@example.com", "@" * 1_000_000, "a@" + "b." * 500_000 + "com"):
        with pytest.raises(InvalidRequest) as caught:
            normalize_email(worst)
        assert caught.value.reason == "bad_email"

"""Unit tests of the form-body parser of the OAuth endpoints (keyturn.server.http.form): no I/O.

Each refusal is 400 ``invalid_request`` with its own reason; what a form may look like (media
type parameters and case, ``+`` and ``%20``, an empty body); the field limit; a large value.
"""

from __future__ import annotations

import pytest

from keyturn.core.errors import InvalidRequest
from keyturn.server.http.form import FORM, MAX_FIELDS, parse_form


def refusal(raw: bytes, content_type: str | None = FORM) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_form(raw, content_type)
    assert caught.value.code == "invalid_request"
    return caught.value


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/json", "text/plain", "multipart/form-data; boundary=x", "application/x-www-form"],
    ids=["none", "empty", "json", "text", "multipart", "truncated"],
)
def test_another_media_type_is_refused_as_form_content_type(content_type: str | None) -> None:
    """A body that is not application/x-www-form-urlencoded is refused before it is read."""
    exc = refusal(b"grant_type=refresh_token", content_type)
    assert exc.reason == "form_content_type"
    assert exc.description == f"The body must be {FORM}."


@pytest.mark.parametrize(
    "raw",
    [b"\xff=1", b"a=\xc3", b"a=%ff", b"a=%C3", b"grant_type", b"a=1&&b=2", b"a=1&", b"&a=1"],
    ids=["raw-not-utf8", "raw-truncated-utf8", "escaped-not-utf8", "escaped-truncated-utf8", "no-equals",
         "empty-field", "trailing-ampersand", "leading-ampersand"],
)  # fmt: skip
def test_a_body_that_is_not_a_well_formed_utf8_form_is_refused_as_form_malformed(raw: bytes) -> None:
    """Bytes or percent-escapes that are not UTF-8, a field without '=', an empty field: refused."""
    exc = refusal(raw)
    assert exc.reason == "form_malformed"
    assert exc.description == "The body is not a well-formed UTF-8 form."


@pytest.mark.parametrize(
    "raw",
    [b"token=a&token=b", b"token=a&token=a", b"token=a&token=", b"%74oken=a&token=b"],
    ids=["different", "same", "second-empty", "escaped-name"],
)
def test_a_parameter_named_twice_is_refused_as_duplicate_parameter(raw: bytes) -> None:
    """RFC 6749 §3.2: a parameter must not be included more than once, even with the same value
    or with its name percent-encoded."""
    exc = refusal(raw)
    assert exc.reason == "duplicate_parameter"
    assert exc.description == "A parameter is named more than once."


@pytest.mark.parametrize(
    "content_type",
    [FORM, f"{FORM}; charset=utf-8", f"{FORM};charset=UTF-8", "Application/X-WWW-Form-URLEncoded", f" {FORM} "],
    ids=["plain", "charset", "charset-no-space", "upper-case", "spaces"],
)
def test_the_form_media_type_is_accepted_with_parameters_and_in_any_case(content_type: str) -> None:
    """The media type is compared without its parameters and case-insensitively (RFC 9110 §8.3.1)."""
    assert parse_form(b"grant_type=refresh_token", content_type) == {"grant_type": "refresh_token"}


def test_plus_and_percent_20_decode_to_spaces() -> None:
    """'+' and '%20' are both a space (a scope list is sent either way); '%2B' is a plus."""
    form = parse_form(b"scope=profile+admin&other=profile%20admin&plus=a%2Bb", FORM)
    assert form == {"scope": "profile admin", "other": "profile admin", "plus": "a+b"}


def test_an_empty_body_is_an_empty_form() -> None:
    """No body means no parameters (the endpoint then says which one is missing), not a malformed form."""
    assert parse_form(b"", FORM) == {}


def test_a_blank_value_is_kept() -> None:
    """``client_id=`` names the parameter with an empty value; it is not dropped."""
    assert parse_form(b"client_id=&token=x", FORM) == {"client_id": "", "token": "x"}


def test_sixteen_fields_parse_and_seventeen_are_refused() -> None:
    """At most MAX_FIELDS (16) fields; one more is refused as malformed, whatever the fields are."""
    assert MAX_FIELDS == 16

    def body(n: int) -> bytes:
        return "&".join(f"f{i}=v" for i in range(n)).encode()

    assert len(parse_form(body(16), FORM)) == 16
    assert refusal(body(17)).reason == "form_malformed"


def test_a_60_kb_value_parses_whole() -> None:
    """A large value (the body ceiling decides how large) is parsed in one pass, unchanged."""
    value = "A" * 60_000
    assert parse_form(f"token={value}&token_type_hint=refresh_token".encode(), FORM) == {
        "token": value,
        "token_type_hint": "refresh_token",
    }

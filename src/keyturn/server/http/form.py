"""Form bodies (``application/x-www-form-urlencoded``), as the OAuth endpoints take them (RFC 6749
§3.2, RFC 7009 §2.1): the one parser, strict and linear.

A body is refused (400 ``invalid_request``) when its media type is not the form's, when it is not
UTF-8 or not well-formed, when it has more than ``MAX_FIELDS`` fields, or when it names a
parameter twice (RFC 6749 §3.2: "MUST NOT be included more than once"). ``urllib.parse`` splits
it in one pass.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from ...core.errors import InvalidRequest

__all__ = ["FORM", "MAX_FIELDS", "parse_form"]

FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 16


def parse_form(raw: bytes, content_type: str | None) -> dict[str, str]:
    """The parameters of a form body.

    Raises:
        InvalidRequest: see the module's docstring.
    """
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != FORM:
        raise InvalidRequest(f"The body must be {FORM}.", reason="form_content_type")
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(raw),
            max_num_fields=MAX_FIELDS,
            errors="strict",  # a percent-escape that is not UTF-8 too, not a silent U+FFFD
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The body is not a well-formed UTF-8 form.", reason="form_malformed") from None
    found = dict(pairs)
    if len(found) != len(pairs):
        raise InvalidRequest("A parameter is named more than once.", reason="duplicate_parameter")
    return found

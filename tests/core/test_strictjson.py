"""Unit tests (no I/O) of keyturn.core._strictjson: the one JSON decoder of text keyturn did not write.

Two parsers that keep different copies of a member named twice read two different messages
(RFC 8259 §4), and NaN/Infinity are not JSON numbers (§6): both are refused, with the caller's
own error, at any depth.
"""

from __future__ import annotations

import json

import pytest

from keyturn.core._strictjson import strict_decoder


class Duplicate(Exception):
    pass


class Constant(Exception):
    pass


DECODER = strict_decoder(duplicate=Duplicate, constant=Constant)


def test_plain_json_decodes_as_the_standard_library_does() -> None:
    text = '{"a": [1, 2.5, "x", null, true], "b": {"c": {}}, "d": -0.0}'
    assert DECODER.decode(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "a": 2}', '{"a": 1, "a": 1}', '{"x": {"a": 1, "a": 2}}', '[{"a": 1, "b": 2, "a": 3}]'],
    ids=["differing", "identical", "nested", "in-array"],
)
def test_a_member_named_twice_raises_the_callers_error(text: str) -> None:
    """Even when both copies agree: which copy wins is not a question a parser should answer."""
    with pytest.raises(Duplicate):
        DECODER.decode(text)


@pytest.mark.parametrize("name", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_raise_the_callers_error_with_their_name(name: str) -> None:
    with pytest.raises(Constant, match=f"^{name}$"):
        DECODER.decode(f'{{"exp": [{name}]}}')


def test_the_same_member_in_sibling_objects_is_not_a_duplicate() -> None:
    assert DECODER.decode('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]

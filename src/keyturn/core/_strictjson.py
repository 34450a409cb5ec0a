"""JSON text as keyturn reads it from others: a member named twice, and NaN or Infinity, refused.

RFC 8259 §4 leaves duplicate members to each parser (two parsers that keep different ones read two
different messages), and ``NaN``/``Infinity`` are not JSON numbers (§6). The access-token parser
and the request-body parser each raise their own error; the rule lives here once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["strict_decoder"]


def strict_decoder(*, duplicate: Callable[[], Exception], constant: Callable[[str], Exception]) -> json.JSONDecoder:
    """A decoder that raises ``duplicate()`` for an object naming a member twice and
    ``constant(name)`` for ``NaN``, ``Infinity`` or ``-Infinity``."""

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) != len(pairs):
            raise duplicate()
        return found

    def refuse(name: str) -> None:
        raise constant(name)

    return json.JSONDecoder(object_pairs_hook=members, parse_constant=refuse)

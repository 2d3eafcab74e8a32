"""Parse an untrusted JSON body within limits, so that no input costs more than its size.

Python's ``json`` alone turns some bodies into crashes rather than answers: invalid UTF-8
raises ``UnicodeDecodeError``, a 5,000-digit integer ``ValueError`` (the interpreter's
digit limit), a 20,000-deep array ``RecursionError``, and a lone ``\\ud800`` escape parses
but cannot be encoded again later. Here each is a :class:`BodyError` saying what is wrong,
and depth and number length have limits of their own.
"""

from __future__ import annotations

import json
import math
from typing import Any


class BodyError(ValueError):
    """The body is not JSON we accept; the message is safe to show (it quotes no content)."""


def parse_json(body: bytes, *, max_depth: int, max_number_length: int) -> Any:
    """The JSON value in ``body``, or :class:`BodyError`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not UTF-8: invalid byte {body[exc.start]:#04x} at offset {exc.start}") from None

    def number(kind: type[int] | type[float]) -> Any:
        def parse(literal: str) -> int | float:
            if len(literal) > max_number_length:
                raise BodyError(f"a number of {len(literal)} characters; at most {max_number_length}")
            value = kind(literal)
            if not math.isfinite(value):
                raise BodyError(f"number {literal} is out of range")
            return value

        return parse

    def constant(name: str) -> Any:
        raise BodyError(f"{name} is not JSON")

    try:
        value = json.loads(text, parse_int=number(int), parse_float=number(float), parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise BodyError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise BodyError(f"JSON nested deeper than {max_depth} levels") from None
    if (depth := _depth(value)) > max_depth:
        raise BodyError(f"JSON nested {depth} levels deep; at most {max_depth}")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError("a string holds a lone UTF-16 surrogate escape (such as \\ud800)") from None
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar: 0), without recursion."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            level.extend((child, depth + 1) for child in children)
    return deepest

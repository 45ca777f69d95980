"""JSON text from users' files, parsed without the failures Python's json module lets through.

    value = parse_record(line)     # json.JSONDecodeError (a ValueError) for bad or too-deep text

Python's parser recurses: a few kB of "[[[[..." raise RecursionError, not JSONDecodeError, near
1000 levels, and recursive code downstream (copy.deepcopy, pickle, dataclasses.asdict) already
fails near 500. No question record nests anywhere near MAX_DEPTH levels, so deeper text is refused
as invalid JSON, with the position where it becomes too deep.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 100  # levels of objects and lists in one record
# a JSON string (escapes included) or one bracket; only brackets outside strings count
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def parse_json(text: str, **kwargs: Any) -> Any:
    """json.loads(text, **kwargs), with text too deep for the parser a JSONDecodeError."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise _too_deep_error(text) from None


def parse_record(text: str, **kwargs: Any) -> Any:
    """parse_json, also refusing a value nested deeper than MAX_DEPTH levels."""
    value = parse_json(text, **kwargs)
    # counting brackets runs at C speed; only text with enough of them can be too deep
    if text.count("[") + text.count("{") > MAX_DEPTH and too_deep(value):
        raise _too_deep_error(text)
    return value


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether objects and lists nest more than `limit` levels in `value` (iterative: no recursion)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _too_deep_error(text: str) -> json.JSONDecodeError:
    depth = 0
    for m in _TOKEN.finditer(text):
        bracket = m.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", text, m.start())
        elif bracket in ("]", "}"):
            depth -= 1
    return json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", text, 0)

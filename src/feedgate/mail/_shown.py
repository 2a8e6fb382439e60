"""How a refusal quotes what it was given: text in quotes, anything else as JSON spells it.

A REST client sends JSON, so a refusal of ``true``, ``null`` or ``[1]`` must say ``true``,
``null`` and ``[1]``, not Python's ``True``, ``None`` and ``[1]``; the CLI only ever gives text,
which keeps its quotes (``'body'``) so that spaces and empty text are visible.
"""

from __future__ import annotations

import json

__all__ = ["shown"]


def shown(value: object, limit: int = 60) -> str:
    """``value`` as a refusal quotes it, cut to about ``limit`` characters."""
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 4] + "...'"
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=_listed)
    except (ValueError, TypeError):  # NaN, bytes, an object: no JSON spells them
        text = f"a value of type {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _listed(value: object) -> list[object]:
    """A set from a Python caller, as the list it would be in JSON; anything else has none."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(type(value).__name__)

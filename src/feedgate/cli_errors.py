"""How every ``feedgate`` command reports a failure: one line on stderr, exit 1.

``feedgate: error: <what went wrong>``; the stack trace only with ``feedgate -v``.
"""

from __future__ import annotations

import sys
import traceback
from typing import NoReturn

import click


def verbose() -> bool:
    """Whether ``feedgate -v`` was given."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("verbose"))


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (or its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fail(message: str, exc: BaseException | None = None) -> NoReturn:
    """Print ``feedgate: error: message`` (one line) and exit 1."""
    click.echo(f"feedgate: error: {' '.join(message.split())}", err=True)
    if exc is not None and verbose():
        traceback.print_exception(exc, file=sys.stderr)
    sys.exit(1)

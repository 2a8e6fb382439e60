"""How every ``feedgate`` command reports a failure: one line on stderr, exit 1.

``feedgate: error: <what went wrong>``; the stack trace only with ``feedgate -v``. Input the
command cannot use (a rule field, a duration) may exit 2 instead, as click's usage errors do.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    import socket

    import sqlalchemy as sa

S = TypeVar("S")


def verbose() -> bool:
    """Whether ``feedgate -v`` was given."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("verbose"))


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (or its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _exit_with(line: str, exc: BaseException | None, status: int = 1) -> NoReturn:
    click.echo(f"feedgate: error: {line}", err=True)
    if exc is not None and verbose():
        traceback.print_exception(exc, file=sys.stderr)
    sys.exit(status)


def fail(message: str, exc: BaseException | None = None, *, status: int = 1) -> NoReturn:
    """Print ``feedgate: error: message`` (one line) and exit ``status`` (1; 2 for bad
    input)."""
    _exit_with(" ".join(message.split()), exc, status)


def fail_because(what: str, exc: BaseException, hint: str = "") -> NoReturn:
    """Print ``feedgate: error: what: <why> (hint)`` and exit 1; the why is the first line of
    ``exc`` (an OS error's own words: "Address already in use", not "[Errno 98] ...")."""
    message = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
    _exit_with(f"{what}: {message}{f' ({hint})' if hint else ''}", exc)


def database_failure(name: str, exc: BaseException) -> NoReturn:
    """Fail for database ``name`` that cannot be opened or used: the driver's words and, for a
    SQLite file, why and what to do (:func:`feedgate.db.describe_error`); no password shown."""
    from feedgate.db import describe_error, display_name

    fail(f"database {display_name(name)}: {describe_error(name, exc)}", exc)


def open_store(name: str, store_class: Callable[[sa.Engine], S], *, create: bool = False) -> S:
    """A store on database ``name``, or one line and exit 1 (a bad URL, a database server that
    is down, a directory that cannot be written, no such database...).

    Every command opens its database here, and this decides whether a missing one is made:
    only a command that writes passes ``create=True``; one that only reads fails with "no
    such database" and leaves the disk as it was, so a mistyped ``--db`` is said, not turned
    into an empty database (and its folders)."""
    import sqlalchemy.exc

    from feedgate.db import DatabaseConfigError, engine

    try:
        return store_class(engine(name, create=create))
    except (DatabaseConfigError, sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        database_failure(name, exc)


def listen(
    host: str, port: int, option: str | None = "--port", *, role: str | None = None
) -> socket.socket:
    """A server's listening socket on ``host:port``, or one line and exit 1 (a busy port says
    "Address already in use" and what to do, not a bare ``[Errno 98]``). ``option`` is the
    one that chooses this port (``up`` listens on three), or None when none does; ``role``
    says what the port is for when the option does not name it alone (``up``'s Maildir sink
    takes the port after the gateway's)."""
    from feedgate.asgi_server import bind

    hint = f" (choose another with {option}, or stop what is using it)" if option else ""
    what = f" ({role})" if role else ""
    try:
        return bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}{what}: {exc.strerror or exc}{hint}", exc)

"""What ``feedgate rule``, ``feedgate exception`` and ``feedgate hits`` share: the database they
open, how a refusal of the policy library is said, and the plain table they print.

The commands are thin over :class:`~feedgate.mail.policy_store.PolicyStore`, which checks every
field (the REST API calls the same methods), so a refusal reads the same on both faces; here it
only gains the option that sets the field. Exit status: 2 for input the library refuses (a rule
field, a name taken, a duration), 1 for a rule or exception that is not there (as ``feedgate
source show`` says of a missing source) and for database failures.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import click

from .errors import database_failure, open_store
from .errors import fail as _fail

if TYPE_CHECKING:
    from feedgate.feeds.sources import SourceError
    from feedgate.mail.policy_store import PolicyStore
    from feedgate.mail.rules import PolicyError

F = TypeVar("F", bound=Callable[..., Any])

DB_HELP: Final = "The manager's database: a SQLite path or a postgresql:// URL [env: FEEDGATE_DB]."
_META: Final = "feedgate.policy.db"

#: The option that sets each field a refusal names (``rule edit`` renames with ``--name``).
OPTION_OF: Final[dict[str, str]] = {
    "name": "NAME",
    "parts": "--part",
    "sources": "--source",
    "kinds": "--kind",
    "action": "--action",
    "position": "--position",
    "subject_prefix": "--subject-prefix",
    "enabled": "--disabled",
    "value": "VALUE",
    "note": "--note",
    "since": "--since",
    "top": "--top",
    "mode": "--mode",
}


def group_db_option(func: F) -> F:
    """``--db`` on a command group (``feedgate rule --db X list``), read by its commands."""

    def keep(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        ctx.meta[_META] = value
        return value

    return click.option(
        "--db",
        envvar="FEEDGATE_DB",
        default=None,
        metavar="DB",
        help=DB_HELP,
        callback=keep,
        expose_value=False,
        is_eager=True,
    )(func)


def db_option(func: F) -> F:
    """``--db`` on one command, as every ``feedgate`` command that opens the database has."""
    return click.option("--db", default=None, metavar="DB", help=DB_HELP)(func)


def db_name(db: str | None) -> str:
    from feedgate.db import default_db

    return db or click.get_current_context().meta.get(_META) or default_db()


def refused(exc: PolicyError | SourceError, option: str | None = None) -> NoReturn:
    """One line for a refusal of the library: the field, the option that sets it, why and what
    to give; exit 2 (1 when the rule or exception named is not there)."""
    from feedgate.mail.rules import PolicyNotFound

    field = exc.field or ""
    option = option or OPTION_OF.get(field)
    message = exc.message
    if field and message.startswith(f"{field}: "):
        message = message[len(field) + 2 :]
    where = f"{field} ({option}): " if field and option else (f"{field}: " if field else "")
    if isinstance(exc, PolicyNotFound):
        _fail(message, exc)  # "no rule named 'x': the rules are ..." names what there is
    _fail(f"{where}{message}", exc, status=2)


@contextmanager
def policy_store(db: str | None, *, create: bool = False) -> Iterator[PolicyStore]:
    """The policy store on the manager's database (made when missing only if ``create``: the
    commands that add); a refusal or a database failure becomes one line and an exit."""
    import sqlalchemy.exc

    from feedgate.feeds.store import FeedStore
    from feedgate.mail.policy_store import PolicyStore
    from feedgate.mail.rules import PolicyError

    name = db_name(db)
    feeds = open_store(name, FeedStore, create=create)
    try:
        try:
            policy = PolicyStore(feeds.engine, feeds.source_names)
        except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            database_failure(name, exc)
        yield policy
    except PolicyError as exc:
        refused(exc)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        database_failure(name, exc)
    finally:
        feeds.close()


#: The widest a table cell gets (``show`` has every value whole).
_MAX_CELL: Final = 40


def _cut(cell: str) -> str:
    return cell if len(cell) <= _MAX_CELL else cell[: _MAX_CELL - 1] + "…"


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], whole: Collection[int] = ()
) -> None:
    """Columns as ``feedgate source list`` prints them: padded, two spaces apart, the last
    column and the columns ``whole`` names (by index) whole, every other cut at 40 characters.
    What an admin copies into another command (an exception's value, a rule's name) is whole:
    a cut one names nothing."""
    cut = [
        [cell if i in whole else _cut(cell) for i, cell in enumerate(row[:-1])] + list(row[-1:])
        for row in rows
    ]
    widths = [max(len(row[i]) for row in [list(header), *cut]) for i in range(len(header) - 1)]
    for row in [list(header), *cut]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


def words(values: Sequence[str]) -> list[str]:
    """Repeated options, each of which may be a comma-separated list: ``--part from,url``."""
    return [word.strip() for value in values for word in value.split(",") if word.strip()]


def format_option(*choices: str, default: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "format_",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help=f"Output: {' or '.join(choices)} ({choices[-1]}: the REST API's JSON).",
    )

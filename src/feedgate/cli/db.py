"""``feedgate db upgrade`` and ``feedgate db current``: the schema migrations by hand.

The stores upgrade their schema when they open, so these are for admins who want to do it at a
chosen moment (after installing a new feedgate, before starting the services on several nodes)
or to see where a database stands. ``--hub`` picks the hub's database instead of the manager's;
``--db`` names it (default: ``FEEDGATE_DB``, or ``FEEDGATE_HUB_DB`` with ``--hub``, else the file
under the user's data directory). Registered on the ``feedgate`` group by :func:`register`.

Exit status 0 on success, 1 on a failure (one ``feedgate: error: ...`` line on stderr), 2 on bad
usage. The heavy imports happen only when a command runs, so ``feedgate`` starts fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from .errors import database_failure

if TYPE_CHECKING:
    import sqlalchemy as sa

    from feedgate.migrate import Schema

_DB_HELP = (
    "The database: a SQLite path or a postgresql:// URL [default: FEEDGATE_DB, or FEEDGATE_HUB_DB "
    "with --hub]."
)


def _target(db: str | None, hub: bool) -> tuple[Schema, str]:
    from feedgate.db import default_db, default_hub_db

    if hub:
        return "hub", db or default_hub_db()
    return "feeds", db or default_db()


@contextmanager
def _engine(name: str, *, create: bool) -> Iterator[sa.Engine]:
    """An engine on ``name`` (a missing one made only if ``create``: see
    :func:`feedgate.cli.errors.open_store`); any database or migration error becomes one line
    and exit 1."""
    import sqlalchemy.exc

    from feedgate.db import DatabaseConfigError, engine

    eng = None
    try:
        eng = engine(name, create=create)
        yield eng
    except (DatabaseConfigError, sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        database_failure(name, exc)
    finally:
        if eng is not None:
            eng.dispose()


@click.group(name="db")
def db_group() -> None:
    """Schema migrations of the manager's (or with --hub the hub's) database."""


@db_group.command("upgrade")
@click.option("--db", default=None, metavar="DB", help=_DB_HELP)
@click.option("--hub", is_flag=True, help="The hub's database instead of the manager's.")
def upgrade_command(db: str | None, hub: bool) -> None:
    """Bring the schema up to this feedgate's newest revision (a database made before
    migrations is adopted; one already up to date is left alone)."""
    from feedgate.db import display_name
    from feedgate.migrate import upgrade

    which, name = _target(db, hub)
    with _engine(name, create=True) as eng:
        result = upgrade(eng, which)
    where = f"{which} schema of {display_name(name)}"
    if not result.changed:
        click.echo(f"{where}: already at {result.after} (head)")
    elif result.adopted:
        click.echo(
            f"{where}: adopted (tables made before migrations), now at {result.after} (head)"
        )
    else:
        click.echo(f"{where}: upgraded from {result.before or 'nothing'} to {result.after} (head)")


@db_group.command("current")
@click.option("--db", default=None, metavar="DB", help=_DB_HELP)
@click.option("--hub", is_flag=True, help="The hub's database instead of the manager's.")
def current_command(db: str | None, hub: bool) -> None:
    """Print the schema revision the database is at (it changes nothing)."""
    from feedgate.migrate import current, head

    which, name = _target(db, hub)
    with _engine(name, create=False) as eng:
        rev = current(eng, which)
    newest = head(which)
    run = "feedgate db upgrade" + (" --hub" if hub else "")
    if rev is None:
        click.echo(f"none (no {which} schema under migrations yet: run '{run}')")
    elif rev == newest:
        click.echo(f"{rev} (head)")
    else:
        click.echo(f"{rev} (head is {newest}: run '{run}')")


def register(group: click.Group) -> None:
    """Add ``db upgrade`` and ``db current`` to the ``feedgate`` command."""
    group.add_command(db_group)

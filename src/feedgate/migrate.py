"""Schema migrations for feedgate's two databases, run from code (design.md "Storage": Alembic).

There are two schemas, each with its own Alembic script directory inside the package
(``feedgate/migrations/feeds`` and ``feedgate/migrations/hub``) and its own version table
(``feedgate_feeds_version``, ``feedgate_hub_version``), so the manager and the hub may share one
PostgreSQL database without their histories colliding. Users need no ``alembic.ini``: the stores
call :func:`upgrade` when they open, and ``feedgate db upgrade`` / ``feedgate db current`` do the
same from the command line.

Why the extra steps around Alembic's own upgrade:

* **Adoption.** Databases made before migrations existed were made by ``create_all``: their tables
  are there but no version table is. Upgrading them from nothing would fail on the first
  ``CREATE TABLE``, so such a database is checked (all of the schema's tables present) and stamped
  at the initial revision, then upgraded as usual. The scheduler's ``leases`` table was created
  separately (only by ``feedgate serve``), so a feeds database may lack it: adoption creates it,
  as revision ``feeds_0001`` defines it, before stamping.
* **Newer databases.** A revision this code does not know means a newer feedgate wrote the
  database; running on would risk damaging it, so that is an error naming both revisions.
* **Concurrency.** Several processes may open one database at once. The upgrade runs in one
  transaction under a lock: ``pg_advisory_xact_lock`` on PostgreSQL (DDL is transactional there,
  and the lock is released at commit), ``BEGIN IMMEDIATE`` on SQLite (one writer per file). The
  state is read again under the lock, so the second process finds the work done. A database
  already at head is recognised by one read without any lock, so ordinary opens never queue.
* **Cheap opens.** That read is plain SQL, and the head it is compared with is :data:`HEADS`, a
  constant (a test checks it against the script directories), so opening a database already at
  head does not import Alembic (about 0.1 s, plus reading the script directory): Alembic is
  imported only inside the functions that use it.
* **SQLite transactions.** :mod:`feedgate.db` switches off the driver's implicit transactions and
  sends ``BEGIN`` itself from a ``begin`` event. So we open the transaction (as ``BEGIN
  IMMEDIATE``) and hand the connection to Alembic, which sees a transaction in progress and runs
  inside it instead of managing its own.
* **SQLite foreign keys.** Later ALTERs on SQLite go through Alembic's batch mode
  (``render_as_batch``), which copies a table and drops the old one. With ``foreign_keys=ON`` that
  DROP deletes the rows and fires ``ON DELETE CASCADE`` in every referencing table (dropping
  ``feed_sources`` would empty ``observables``). The pragma cannot change inside a transaction,
  so it is switched off on the connection before ``BEGIN`` and back on afterwards, and
  ``PRAGMA foreign_key_check`` must find nothing before the migration commits.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import sqlalchemy as sa

from feedgate.db import DatabaseConfigError

if TYPE_CHECKING:  # at run time imported where used: an open at head needs none (module doc)
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "HEADS",
    "SCHEMAS",
    "MigrationError",
    "Schema",
    "UpgradeResult",
    "config",
    "current",
    "differences",
    "head",
    "target_metadata",
    "upgrade",
]

Schema = Literal["feeds", "hub"]
SCHEMAS: Final[tuple[Schema, ...]] = ("feeds", "hub")

_MIGRATIONS: Final = Path(__file__).parent / "migrations"

#: Each schema's version table: distinct, so both histories can live in one database.
VERSION_TABLES: Final[dict[Schema, str]] = {
    "feeds": "feedgate_feeds_version",
    "hub": "feedgate_hub_version",
}

#: Each schema's head revision, known without Alembic: an open compares the database's version
#: with it and, when they are equal, is done (module doc "Cheap opens"). When you add a revision,
#: set it here too; ``tests/test_migrate_head.py`` fails until it equals Alembic's head.
HEADS: Final[dict[Schema, str]] = {"feeds": "feeds_0012", "hub": "hub_0001"}

#: The revision a database made by ``create_all`` is stamped at, and the tables it must have.
#: Frozen: these are the tables as the code before migrations created them.
INITIAL: Final[dict[Schema, str]] = {"feeds": "feeds_0001", "hub": "hub_0001"}
_ADOPT_TABLES: Final[dict[Schema, frozenset[str]]] = {
    "feeds": frozenset(
        {"feed_sources", "feed_status", "observables", "feed_log", "feed_counters", "leases"}
    ),
    "hub": frozenset(
        {
            "users",
            "api_keys",
            "subscriptions",
            "settings",
            "counters",
            "pulses",
            "packages",
            "indicators",
        }
    ),
}


def _frozen_leases(metadata: sa.MetaData) -> sa.Table:
    """The scheduler's ``leases`` table exactly as revision ``feeds_0001`` creates it (adoption
    adds it to old databases that never ran the scheduler; see the module doc)."""
    return sa.Table(
        "leases",
        metadata,
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("node", sa.String(200), nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
    )


#: Tables adoption may create when they are missing, with their frozen definitions.
_ADOPT_OPTIONAL: Final[dict[Schema, dict[str, Callable[[sa.MetaData], sa.Table]]]] = {
    "feeds": {"leases": _frozen_leases},
    "hub": {},
}


def _lock_key(which: Schema) -> int:
    """The PostgreSQL advisory lock of one schema's migrations (a signed 64-bit number)."""
    digest = hashlib.sha256(f"feedgate migrations {which}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class MigrationError(DatabaseConfigError):
    """A database whose schema this code cannot bring up to date: newer than the code, or
    feedgate tables without a version table that are not a complete older schema.

    A :class:`~feedgate.db.DatabaseConfigError` (a database that cannot be used), so every command
    that opens a store already reports it in one line."""


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    """What :func:`upgrade` found and did."""

    before: str | None  # the revision found; None for an empty or a ``create_all`` database
    after: str  # the revision the database is at now (the head)
    adopted: bool  # a ``create_all`` database was stamped at the initial revision first

    @property
    def changed(self) -> bool:
        return self.adopted or self.before != self.after


def config(which: Schema, connection: sa.Connection | None = None) -> Config:
    """An Alembic config for one schema, built in code (no ``alembic.ini``).

    With ``connection`` the migrations run on it, inside its transaction (see ``env.py``).
    Developers can use it with :mod:`alembic.command`, e.g. ``command.revision(config("feeds"),
    "add x", autogenerate=True)`` with ``connection`` open on an up-to-date database.
    """
    from alembic.config import Config

    if which not in SCHEMAS:
        raise ValueError(f"unknown schema {which!r}: one of {', '.join(SCHEMAS)}")
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS / which))
    cfg.attributes["feedgate_schema"] = which
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script(which: Schema) -> ScriptDirectory:
    """The schema's revisions, read from the package once per process."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config(which))


def head(which: Schema) -> str:
    """The newest revision this code knows for ``which``."""
    rev = _script(which).get_current_head()
    assert rev is not None, f"no migrations for {which}"
    return rev


def target_metadata(which: Schema) -> sa.MetaData:
    """The tables the code expects at head: what autogenerate and the tests compare against.

    The feeds schema is the store's tables plus the scheduler's ``leases`` and the mail
    policy's tables (rules, exceptions, match log: shared by a cluster like the feeds). Read from
    the schema modules, never the stores: they import this module to upgrade on open."""
    schemas: list[sa.MetaData]
    if which == "feeds":
        from feedgate.feeds.schema import metadata as feeds_tables
        from feedgate.mail.schema import metadata as mail_tables

        schemas = [feeds_tables, mail_tables]
    else:
        from feedgate.hub.schema import metadata as hub_tables

        schemas = [hub_tables]
    md = sa.MetaData()
    for tables in schemas:
        for table in tables.tables.values():
            table.to_metadata(md)
    return md


def _include_name(which: Schema) -> Callable[[str | None, str, Any], bool]:
    """Autogenerate's filter: leave out the other schema's tables (and its version table), so
    a database holding both schemas is not read as "drop the other one's tables"."""
    other: Schema = "hub" if which == "feeds" else "feeds"
    foreign = {*target_metadata(other).tables, VERSION_TABLES[other]}

    def include(name: str | None, type_: str, _parent: Any) -> bool:
        return not (type_ == "table" and name in foreign)

    return include


def differences(engine: sa.Engine, which: Schema) -> list[Any]:
    """What Alembic's autogenerate finds between the database and the code's tables: empty when
    the migrations made exactly what the code expects (the tests check this on both backends)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn, conn.begin():
        ctx = MigrationContext.configure(
            conn,
            opts={
                "version_table": VERSION_TABLES[which],
                "include_name": _include_name(which),
                "compare_type": True,
            },
        )
        return list(compare_metadata(ctx, target_metadata(which)))


def _read_state(conn: sa.Connection, which: Schema) -> tuple[bool, str | None]:
    """(whether the version table exists, the revision in it).

    Plain SQL, not Alembic's ``MigrationContext``, so an open at head imports no Alembic: the
    version table is Alembic's, one ``version_num`` row per head."""
    table = VERSION_TABLES[which]
    if not sa.inspect(conn).has_table(table):
        return False, None
    version = sa.select(sa.column("version_num", sa.String)).select_from(sa.table(table))
    heads = list(conn.execute(version).scalars())
    if len(heads) > 1:
        raise MigrationError(f"{which} schema has several revisions at once: {', '.join(heads)}")
    return True, heads[0] if heads else None


def _check_known(which: Schema, rev: str | None) -> None:
    if rev is None or rev == HEADS[which]:  # the head is known, without reading the scripts
        return
    script = _script(which)
    try:
        known = script.get_revision(rev) is not None
    except Exception:  # alembic.util.CommandError / ResolutionError for an unknown id
        known = False
    if not known:
        raise MigrationError(
            f"the {which} schema is at revision {rev}, which this feedgate does not know "
            f"(its newest is {head(which)}): the database was upgraded by a newer feedgate; "
            "run that version, or restore a backup made before the upgrade"
        )


def current(engine: sa.Engine, which: Schema) -> str | None:
    """The revision the database is at (None: no version table yet). Reads only.

    Raises :class:`MigrationError` for a revision this code does not know."""
    with engine.connect() as conn, conn.begin():
        _exists, rev = _read_state(conn, which)
    _check_known(which, rev)
    return rev


@contextmanager
def _locked(engine: sa.Engine, which: Schema) -> Iterator[sa.Connection]:
    """One transaction holding the schema's migration lock (see the module doc)."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection if sqlite else None
        if sqlite:
            # Outside any transaction, where the pragma takes effect (module doc).
            raw.execute("PRAGMA foreign_keys = OFF")
        try:
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(which))))
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise MigrationError(
                            f"{which} migration left rows whose foreign keys point nowhere "
                            f"(first: {tuple(broken[0])}); nothing was changed"
                        )
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys = ON")


def _adopt(conn: sa.Connection, which: Schema) -> bool:
    """Stamp a ``create_all`` database at the initial revision; False for an empty one."""
    present = set(sa.inspect(conn).get_table_names())
    expected = _ADOPT_TABLES[which]
    found = expected & present
    if not found:
        return False
    optional = _ADOPT_OPTIONAL[which]
    missing = expected - present - optional.keys()
    if missing:
        raise MigrationError(
            f"the database has some {which} tables ({', '.join(sorted(found))}) but not "
            f"{', '.join(sorted(missing))}, and no {VERSION_TABLES[which]} table: it is not a "
            "feedgate database that can be adopted"
        )
    md = sa.MetaData()
    for name, make in optional.items():
        if name not in present:
            make(md).create(conn)
    from alembic import command

    command.stamp(config(which, conn), INITIAL[which])
    return True


def upgrade(engine: sa.Engine, which: Schema) -> UpgradeResult:
    """Bring ``which``'s schema in the database up to the code's head revision.

    An empty database gets every revision; a ``create_all`` database is adopted first; a
    database at head is left alone (one read, no lock). Safe to call from several processes at
    once. Raises :class:`MigrationError` for a database newer than the code or an incomplete
    set of tables.
    """
    with engine.connect() as conn, conn.begin():
        _exists, rev = _read_state(conn, which)
    if rev == HEADS[which]:  # the usual open: done without Alembic (module doc "Cheap opens")
        return UpgradeResult(before=rev, after=rev, adopted=False)
    from alembic import command

    target = head(which)
    _check_known(which, rev)
    if rev == target:
        return UpgradeResult(before=rev, after=rev, adopted=False)
    with _locked(engine, which) as conn:
        exists, rev = _read_state(conn, which)  # again: another process may have done it
        _check_known(which, rev)
        adopted = not exists and _adopt(conn, which)
        if rev != target:
            command.upgrade(config(which, conn), target)
    return UpgradeResult(before=rev, after=target, adopted=adopted)


def run_env(context: Any) -> None:
    """The body of each script directory's ``env.py``: run the migrations on the connection
    :func:`upgrade` passed in, inside its transaction (online mode only: feedgate never writes
    SQL scripts)."""
    cfg: Config = context.config
    which: Schema = cfg.attributes["feedgate_schema"]
    conn: sa.Connection | None = cfg.attributes.get("connection")
    if conn is None:
        raise MigrationError(
            "feedgate migrations run on a connection given by feedgate.migrate (config(which, "
            "connection)); they are not run from an alembic.ini"
        )
    context.configure(
        connection=conn,
        target_metadata=target_metadata(which),
        version_table=VERSION_TABLES[which],
        render_as_batch=conn.dialect.name == "sqlite",
        compare_type=True,
        include_name=_include_name(which),
    )
    with context.begin_transaction():
        context.run_migrations()

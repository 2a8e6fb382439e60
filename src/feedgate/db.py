"""Engine set-up for SQLite (the default, in WAL mode) and PostgreSQL (psycopg 3).

A database is named by a SQLite path, a ``sqlite://`` URL or a ``postgresql://`` URL
(design.md "Interfaces"). ``FEEDGATE_DB`` names the manager's database and ``FEEDGATE_HUB_DB`` the
hub's; without them each lives in a SQLite file under the user's data directory.

SQLite connections get ``journal_mode=WAL``, ``foreign_keys=ON``, a busy timeout and
``synchronous=NORMAL``. Transactions are begun explicitly by us (the driver's own implicit
transactions are switched off) so that a writer can ask for ``BEGIN IMMEDIATE`` with the
execution option ``sqlite_immediate=True``: a read-then-write transaction then never fails with
"database is locked" on lock upgrade, it waits for the busy timeout instead.

Schema migrations (Alembic) are in :mod:`feedgate.migrate`; stores run them on open.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url

from feedgate.redaction import hide_url_credentials

#: How long a SQLite connection waits for a lock before giving up, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseConfigError(ValueError):
    """A database name that cannot be used (bad URL, missing driver)."""


#: What a missing SQLite database is told (:class:`NoSuchDatabase`; a PostgreSQL server's
#: "database ... does not exist" is told the same way by :func:`describe_error`).
NO_SUCH_DATABASE: Final = (
    "no such database (check the name; only a command that adds something, such as"
    " `feedgate source add` or `feedgate db upgrade`, makes one)"
)


class NoSuchDatabase(DatabaseConfigError):
    """``engine(..., create=False)`` of a SQLite file that does not exist: a mistyped name,
    most likely, which a command that only reads must not turn into an empty database."""

    def __init__(self) -> None:
        super().__init__(NO_SUCH_DATABASE)


def data_dir() -> Path:
    """The user's data directory for feedgate: ``$XDG_DATA_HOME/feedgate`` or
    ``~/.local/share/feedgate``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "feedgate"


def default_hub_db() -> str:
    """The hub's database: ``FEEDGATE_HUB_DB`` or ``<data dir>/hub.db``."""
    return os.environ.get("FEEDGATE_HUB_DB") or str(data_dir() / "hub.db")


def default_db() -> str:
    """The manager's database: ``FEEDGATE_DB`` or ``<data dir>/feedgate.db``."""
    return os.environ.get("FEEDGATE_DB") or str(data_dir() / "feedgate.db")


def _url(url_or_path: str) -> URL:
    text = url_or_path.strip()
    if not text:
        raise DatabaseConfigError("empty database name")
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        url = make_url(text)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends
        raise DatabaseConfigError(f"not a database URL: {_redact(text)}") from exc
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
            url = url.set(drivername="postgresql+psycopg")
        else:
            raise DatabaseConfigError(
                f"unsupported PostgreSQL driver {url.drivername!r}: use postgresql:// (psycopg 3)"
            )
        if importlib.util.find_spec("psycopg") is None:
            raise DatabaseConfigError("PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'")
        return url
    if backend == "sqlite":
        if url.drivername != "sqlite":
            raise DatabaseConfigError(f"unsupported SQLite driver {url.drivername!r}")
        return url
    raise DatabaseConfigError(
        f"unsupported database {backend!r}: use a SQLite path or a postgresql:// URL"
    )


def _redact(text: str) -> str:
    """A URL without its password, for error messages (its user name names the database)."""
    return hide_url_credentials(text, keep_username=True)


def display_name(url_or_path: str) -> str:
    """How to show a database to a user: a path as given, a URL without its password."""
    return _redact(url_or_path) if "://" in url_or_path else url_or_path


#: A PostgreSQL server's words for a database that does not exist.
_PG_MISSING: Final = re.compile(r'FATAL: +database ".*" does not exist')


def describe_error(url_or_path: str, exc: BaseException) -> str:
    """One line for a failure to open or use a database: the driver's own words (without
    SQLAlchemy's wrapping), and for a SQLite file that cannot be opened, why and what to do."""
    orig = getattr(exc, "orig", None)
    text = " ".join(str(orig if isinstance(orig, BaseException) else exc).split())
    text = text or type(exc).__name__
    if _PG_MISSING.search(text):  # a server never makes one on connect: no command may
        return "no such database (check the name; a PostgreSQL database is made with createdb)"
    if "unable to open database file" in text and "://" not in url_or_path:
        hint = _sqlite_open_hint(Path(url_or_path).expanduser())
        if hint:
            return f"cannot open the database file: {hint}"
    return text


def _sqlite_open_hint(path: Path) -> str | None:
    where = "choose another with --db or FEEDGATE_DB"
    if path.is_dir():
        return f"{path} is a directory: give the path of a file, or {where}"
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"the directory {folder} cannot be written (SQLite keeps the database's -wal and "
            f"-shm files beside it): make it writable, or {where}"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{path} cannot be read and written: fix its permissions, or {where}"
    return None


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def _sqlite_file(url: URL, create: bool) -> None:
    """Make sure the database file of ``url`` exists, or fail as :class:`NoSuchDatabase`.

    feedgate creates it, not SQLite, so that it is its owner's only: mode 0600 (SQLite gives
    the -wal and -shm files the database file's mode) in a folder made 0700. SQLite would make
    it 0644, readable by every account on the machine, secrets' ciphertexts and all."""
    if url.query.get("uri") or url.database is None:
        return  # a SQLite URI filename: its own options decide
    path = Path(url.database)
    if path.exists():
        return
    if not create:
        raise NoSuchDatabase
    make_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):  # another process made it meanwhile
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_private_dir(path: Path) -> None:
    """Make folder ``path`` (and its missing parents) if it is missing, the folder itself
    0700: what feedgate keeps there (databases, the API token) is nobody else's business."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def _use_wal(cur: Any) -> None:
    """Put the database file in WAL mode (it stays so: later connections only check).

    Switching needs the file to itself, and SQLite answers "database is locked" at once,
    without its busy handler, when another connection opening a brand-new file holds it: so
    retry for as long as any other wait on the database may take.
    """
    if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def engine(url_or_path: str, *, create: bool = True, **kwargs: Any) -> sa.Engine:
    """An engine for a SQLite path, a ``sqlite://`` URL or a ``postgresql://`` URL.

    ``create``: whether a missing SQLite database is created (0600, its missing folders 0700)
    or refused with :class:`NoSuchDatabase`; only what writes may create one. A PostgreSQL
    database is never created: connecting to a missing one fails, which :func:`describe_error`
    words the same way. Raises :class:`DatabaseConfigError` for a name that cannot work (with
    the password left out of the message). Statement parameters are hidden from SQLAlchemy's
    errors and logs.
    """
    url = _url(url_or_path)
    # Statement parameters may hold secrets' digests or user data: keep them out of errors/logs.
    kwargs.setdefault("hide_parameters", True)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)

    memory = _is_memory(url)
    if not memory:
        _sqlite_file(url, create)
    if memory:
        # One shared connection, or every checkout would see its own empty database.
        kwargs.setdefault("poolclass", sa.pool.StaticPool)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    eng = sa.create_engine(url, **kwargs)

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we send BEGIN ourselves (see module doc)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys = ON")
            if not memory:
                _use_wal(cur)
                cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(eng, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return eng


@contextmanager
def write_transaction(engine_: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` on SQLite, so a read-then-write waits for the
    lock up front instead of failing half-way."""
    with engine_.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine_: sa.Engine) -> Iterator[sa.Connection]:
    """A read transaction: one consistent snapshot for all its queries."""
    with engine_.connect() as conn, conn.begin():
        yield conn


def naive_utc(moment: datetime) -> datetime:
    """A moment as the databases store it: naive UTC (an aware one converted; a naive one is
    taken as UTC already). The mail layer's stores all write their times through this."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def aware_utc(moment: datetime) -> datetime:
    """A stored (naive UTC) moment back as an aware UTC datetime."""
    return moment.replace(tzinfo=UTC)

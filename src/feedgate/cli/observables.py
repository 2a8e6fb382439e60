"""``feedgate observables`` and ``feedgate log``: browse the stored observables and the
threat-feed log.

Registered on the ``feedgate`` group by :func:`register`. The database is ``--db`` or
``FEEDGATE_DB`` (default: ``feedgate.db`` under the user's data directory). Exit status 0 on
success, 1 on a failure (one ``feedgate: error: ...`` line on stderr; the stack trace only with
``feedgate -v``), 2 on bad usage.

``--format stix2`` writes one STIX 2.1 bundle of indicators, streamed: one indicator per
observable with a single-comparison pattern (``[ipv4-addr:value = '198.51.100.1']``), its id a
uuid5 of source, kind and value (the same observable always gets the same id). Observables of kind
``other`` are written only when their original type is a STIX 2 object path (what our STIX 2
reader records for them); the others have no STIX 2 pattern and are left out, counted on stderr.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TextIO

import click

from feedgate.observables import Kind

from .errors import database_failure, open_store
from .errors import fail as _fail
from .errors import first_line as _first_line

if TYPE_CHECKING:
    from feedgate.feeds.store import ExportRow, FeedStore, StoredObservable

_DB_HELP = "The manager's database: a SQLite path or a postgresql:// URL [env: FEEDGATE_DB]."
FORMATS: Final = ("jsonl", "table", "csv", "stix2")
#: How often ``log --follow`` looks for new rows, in seconds.
FOLLOW_INTERVAL: Final = 1.0

#: uuid5 namespace of feedgate's STIX 2 indicator ids.
STIX2_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://feedgate.invalid/stix2/indicator")

_STIX2_PATHS: Final[dict[str, str]] = {
    "ipv4": "ipv4-addr:value",
    "ipv6": "ipv6-addr:value",
    "domain": "domain-name:value",
    "url": "url:value",
    "email": "email-addr:value",
    "md5": "file:hashes.MD5",
    "sha1": "file:hashes.'SHA-1'",
    "sha256": "file:hashes.'SHA-256'",
}
#: A STIX 2 object path such as ``mutex:name`` or ``file:hashes.'SHA-512'``.
_OBJECT_PATH: Final = re.compile(r"[a-z0-9][a-z0-9-]*:[A-Za-z0-9_-]+(?:\.(?:'[^'\\]*'|[\w-]+))*")


@contextmanager
def _store(db: str | None) -> Iterator[FeedStore]:
    """Open the feed store; a database or store error becomes one line and exit 1."""
    import sqlalchemy.exc

    from feedgate.db import default_db
    from feedgate.feeds.store import FeedStore, FeedStoreError

    name = db or default_db()
    store = open_store(name, FeedStore)
    try:
        yield store
    except sqlalchemy.exc.SQLAlchemyError as exc:
        database_failure(name, exc)
    except FeedStoreError as exc:
        _fail(_first_line(exc), exc)
    finally:
        store.close()


def _quiet_broken_pipe() -> None:
    """Whoever reads our output (``| head``) has had enough: stop quietly, as cat does."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --- observables ------------------------------------------------------------------------------


def _stix_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _stix_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def stix2_pattern(kind: str, value: str, original_type: str | None) -> str | None:
    """The STIX 2 pattern for one observable, or None when it has none."""
    path = _STIX2_PATHS.get(kind)
    if kind == "cidr":
        path = "ipv6-addr:value" if ":" in value else "ipv4-addr:value"
    elif kind == "other":
        path = original_type if original_type and _OBJECT_PATH.fullmatch(original_type) else None
    if path is None:
        return None
    return f"[{path} = {_stix_quote(value)}]"


def stix2_indicator_id(source: str, kind: str, value: str) -> str:
    name = "\0".join((source, kind, value))
    return f"indicator--{uuid.uuid5(STIX2_NAMESPACE, name)}"


def stix2_indicator(stored: StoredObservable) -> dict[str, Any] | None:
    """One STIX 2.1 indicator for a stored observable, or None (no pattern for it)."""
    pattern = stix2_pattern(stored.kind, stored.value, stored.original_type)
    if pattern is None:
        return None
    created = stored.first_seen
    modified = max(stored.last_seen, created)
    valid_from = created
    if stored.valid_until is not None and stored.valid_until <= valid_from:
        valid_from = stored.valid_until - timedelta(seconds=1)  # STIX: valid_until > valid_from
    ctx = stored.context
    title = ctx.get("indicator_title")
    out: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix2_indicator_id(stored.source, stored.kind, stored.value),
        "created": _stix_time(created),
        "modified": _stix_time(modified),
        "name": str(title) if title else f"{stored.kind} {stored.value}"[:200],
        "indicator_types": ["malicious-activity"],
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": _stix_time(valid_from),
    }
    if stored.valid_until is not None:
        out["valid_until"] = _stix_time(stored.valid_until)
    description = ctx.get("description")
    if isinstance(description, str) and description:
        out["description"] = description
    confidence = ctx.get("confidence")
    if isinstance(confidence, int) and not isinstance(confidence, bool) and 0 <= confidence <= 100:
        out["confidence"] = confidence
    out["x_feedgate_source"] = stored.source
    out["x_feedgate_kind"] = stored.kind
    return out


class _Stix2Bundle:
    """Streams one bundle: header, indicators one by one, closing brackets."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0
        self.left_out = 0
        out.write(f'{{"type": "bundle", "id": "bundle--{uuid.uuid4()}", "objects": [')

    def write(self, stored: StoredObservable) -> None:
        indicator = stix2_indicator(stored)
        if indicator is None:
            self.left_out += 1
            return
        self.out.write(",\n  " if self.count else "\n  ")
        self.out.write(json.dumps(indicator, ensure_ascii=False))
        self.count += 1

    def close(self) -> None:
        self.out.write("\n]}\n" if self.count else "]}\n")


#: The longest ``--search`` text: longer is a paste gone wrong (and SQLite refuses a LIKE
#: pattern over 50,000 bytes with "pattern too complex").
MAX_SEARCH: Final = 1000


def _check_search(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and len(value) > MAX_SEARCH:
        raise click.BadParameter(
            f"{len(value)} characters is too long: search for at most {MAX_SEARCH}"
        )
    return value


def _check_kind(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from feedgate.feeds.store import kind_filter

    try:
        return None if value is None else kind_filter(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("observables")
@click.option("--source", default=None, metavar="NAME", help="Only this source's observables.")
@click.option(
    "--kind",
    default=None,
    metavar="KIND",
    callback=_check_kind,
    help=f"Only this kind, in any case: {', '.join(k.value for k in Kind)}.",
)
@click.option(
    "--search",
    default=None,
    metavar="TEXT",
    callback=_check_search,
    help=f"Text in the value or its context (at most {MAX_SEARCH} characters).",
)
@click.option("--all", "include_expired", is_flag=True, help="Include expired observables.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="jsonl",
    show_default=True,
    help="Output format on stdout (a table longer than the terminal goes through $PAGER).",
)
@click.option("--limit", type=click.IntRange(0), default=None, help="At most N [default: all].")
@click.option("--db", envvar="FEEDGATE_DB", default=None, metavar="DB", help=_DB_HELP)
def observables_command(
    source: str | None,
    kind: str | None,
    search: str | None,
    include_expired: bool,
    fmt: str,
    limit: int | None,
    db: str | None,
) -> None:
    """List stored observables (live ones unless --all)."""
    from feedgate.feeds.export import row_writer

    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):
        # A lone surrogate (a STIX 2 "\ud800" escape) has no UTF-8: written as that escape,
        # which JSON reads back as the same text, instead of a UnicodeEncodeError mid-export.
        out.reconfigure(errors="backslashreplace")
    with _store(db) as store:
        if source is not None:
            store.status(source)  # FeedStoreError "no source named ..." for an unknown one
        exported = store.export_rows(
            source=source, kind=kind, search=search, live_only=not include_expired
        )
        rows: Iterator[ExportRow] = exported
        try:
            if limit is not None:
                rows = itertools.islice(exported, limit)
            bundle: _Stix2Bundle | None = None
            if fmt == "stix2":
                bundle = _Stix2Bundle(out)
                for row in rows:
                    bundle.write(row.stored())
                bundle.close()
            elif fmt == "table" and out.isatty():
                _table_on_screen(rows, out)
            else:
                write = row_writer(fmt, out)
                for row in rows:
                    write(row)
            out.flush()
        except BrokenPipeError:
            _quiet_broken_pipe()
            return
        finally:
            exported.close()  # ends the store's read transaction
    if bundle is not None and bundle.left_out:
        click.echo(
            f"feedgate: {bundle.left_out} observable(s) of kind other left out of the STIX 2 "
            "bundle (their type has no STIX 2 pattern)",
            err=True,
        )


def _table_on_screen(rows: Iterator[ExportRow], out: TextIO) -> None:
    """A table on a terminal: as it is when it fits the screen, else through the pager
    (``$PAGER``, else less or more), streamed: a million rows scrolled past are of no use, and
    the pager reads them only as fast as it shows them."""
    from feedgate.feeds.export import row_writer

    screen = shutil.get_terminal_size().lines
    ahead = list(itertools.islice(rows, max(1, screen - 2)))  # the header and the prompt
    extra = next(rows, None)
    if extra is None:
        write = row_writer("table", out)
        for row in ahead:
            write(row)
        return

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        write = row_writer("table", buffer)
        for row in itertools.chain(ahead, [extra], rows):
            write(row)
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    click.echo_via_pager(lines())


# --- log --------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _on_term(_signum: int, _frame: object) -> None:
    raise _Stop


#: Rows read per query while printing the log.
LOG_PAGE: Final = 1000


@click.command("log")
@click.option("--source", default=None, metavar="NAME", help="Only this source's rows.")
@click.option("--limit", type=click.IntRange(0), default=None, help="At most N [default: all].")
@click.option(
    "--order",
    type=click.Choice(["asc", "desc"]),
    default="asc",
    show_default=True,
    help="asc: oldest first; desc: newest first (with --limit N, the newest N rows).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new rows until interrupted.")
@click.option("--db", envvar="FEEDGATE_DB", default=None, metavar="DB", help=_DB_HELP)
def log_command(
    source: str | None, limit: int | None, order: str, follow: bool, db: str | None
) -> None:
    """Print the threat-feed log (oldest first unless --order desc).

    The same rows as the REST API's GET /api/v1/log with the same source, limit and order."""
    from feedgate.feeds.log import format_entry

    if follow and (order == "desc" or limit is not None):
        raise click.UsageError(
            "--follow prints rows as they come: not with --order desc or --limit"
        )
    newest_first = order == "desc"
    out = sys.stdout
    if follow:
        signal.signal(signal.SIGTERM, _on_term)
    with _store(db) as store:
        after, before, printed = 0, None, 0
        try:
            while True:
                size = LOG_PAGE if limit is None else min(LOG_PAGE, limit - printed)
                entries = store.log_entries(
                    source, after_id=after, limit=size, before_id=before, newest_first=newest_first
                )
                for entry in entries:
                    out.write(format_entry(entry) + "\n")
                if entries:
                    printed += len(entries)
                    if newest_first:
                        before = entries[-1].id
                    else:
                        after = entries[-1].id
                    out.flush()
                    if len(entries) == size:
                        continue
                if not follow:
                    if source is not None and printed == 0 and limit != 0:
                        _no_rows(store, source)
                    break
                time.sleep(FOLLOW_INTERVAL)
        except (KeyboardInterrupt, _Stop):
            out.flush()
        except BrokenPipeError:
            _quiet_broken_pipe()


def _no_rows(store: FeedStore, source: str) -> None:
    """No log rows for ``source``: fine for a source that has not polled yet, an error (a typo,
    most likely) when no source has that name either. A deleted source's rows stay readable."""
    from feedgate.feeds.store import FeedStoreError

    try:
        store.status(source)
    except FeedStoreError:
        _fail(f"no log rows for {source!r} and no source of that name (see feedgate source list)")


def register(group: click.Group) -> None:
    """Add ``observables`` and ``log`` to the ``feedgate`` command."""
    group.add_command(observables_command)
    group.add_command(log_command)

"""The feed manager's storage: sources, their poll status, observables and the threat-feed log.

SQLAlchemy Core over SQLite (WAL) or PostgreSQL (design.md "Storage"); the schema is brought up
to date on open by the Alembic migrations of :mod:`feedgate.migrate` (schema ``feeds``; the tables
are in :mod:`feedgate.feeds.schema`, what its head revision makes). Timestamps go in and come out
as aware UTC datetimes (stored as naive UTC).

Observables are keyed by (source, digest), where the digest is SHA-256 of ``kind NUL value``: a
value may be a 64 kB YARA rule, and PostgreSQL cannot index text that long. ``first_seen`` and
``last_seen`` are the ``seen_at`` of :meth:`Segment.upsert` (the poller passes its clock: when
feedgate saw the value); ``first_seen`` is kept across updates, ``last_seen`` never moves
backwards.

Ingest (:meth:`FeedStore.segment`): one transaction per poll segment, and the watermark moves in
that same transaction, so a failed segment leaves nothing behind and is polled again. How the rows
get there fast, and how SQLite's single writer lock is kept short, is in
:mod:`feedgate.feeds._ingest`. An observable seen again after it expired is live again and counted
as **new** (the matcher gains it); its ``first_seen`` is kept.

Expiry (:meth:`FeedStore.expire`) marks observables not seen for longer than the source's age, or
past their own ``valid_until``, as expired: kept for history, no longer live. An observable whose
``valid_until`` has already passed when it is written is stored expired.

Contexts are stored in two layers: what a package's indicators share (the pulse's id, title,
description, TLP) once per source in ``shared_contexts``, and each indicator's own keys in its
observables' rows (:class:`feedgate.observables.LayeredContext`). A pulse's description is often
the largest part of a context; repeated in every row, it was most of the store. Reads merge the
layers; expiry drops layers no row refers to any more.

:meth:`FeedStore.version` is a counter bumped by every committed change that matters to a matcher
(segments that wrote rows, expiries that expired something, sources added, changed or deleted).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Generator, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import sqlalchemy as sa

from feedgate import migrate
from feedgate.db import read_transaction, write_transaction
from feedgate.observables import Kind, Observable

from . import held
from ._ingest import BATCH_SIZE, MEMORY_BUDGET, Segment, layers_lock
from .held import HeldCount
from .schema import (
    counters,
    log_table,
    observables_table,
    shared_contexts,
    sources,
    status_table,
)
from .sources import Source, username_is_secret

__all__ = [
    "BATCH_SIZE",
    "ExportRow",
    "FeedStore",
    "FeedStoreError",
    "HeldCount",
    "LogEntry",
    "Segment",
    "SourceStatus",
    "StoredObservable",
    "kind_filter",
]

SCHEMA_VERSION: Final = "1"
LEVELS: Final = ("info", "warning", "error")


class FeedStoreError(Exception):
    """A store operation that cannot be done (duplicate or unknown source, bad argument)."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """What the last poll of a source did; all ``None`` before the first one."""

    last_start: datetime | None = None
    last_end: datetime | None = None
    result: str | None = None  # "ok" | "error" | "running" | None
    error: str | None = None
    blocks: int | None = None
    read: int | None = None
    new: int | None = None
    updated: int | None = None
    expired: int | None = None
    watermark: datetime | None = None


_STATUS_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(SourceStatus))
_STATUS_TIMES: Final = frozenset({"last_start", "last_end", "watermark"})
_RESULTS: Final = frozenset({"ok", "error", "running"})


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One threat-feed log row."""

    id: int
    at: datetime
    level: str  # "info" | "warning" | "error"
    source: str | None
    message: str


@dataclass(frozen=True, slots=True)
class StoredObservable:
    """An observable as stored for a source."""

    source: str
    kind: str
    value: str
    original_type: str | None
    first_seen: datetime
    last_seen: datetime
    valid_until: datetime | None
    expired: bool
    context: dict[str, Any]
    #: The row's id (the key a browse pages on with ``after_id``); None where a read does not
    #: say it (exports). Not compared: the same observable read two ways is equal.
    id: int | None = field(default=None, compare=False)

    def to_observable(self) -> Observable:
        """The :class:`Observable` (kind, value, type, context) this row was made from."""
        return Observable(Kind(self.kind), self.value, self.original_type, self.context)


class ExportRow(NamedTuple):
    """A stored observable as an export reads it: its context still the stored JSON of its two
    layers (an export of a million rows need not decode and merge a million contexts to write
    them again). The shared layer's text is the same object for the rows of one layer."""

    source: str
    kind: str
    value: str
    original_type: str | None
    first_seen: datetime
    last_seen: datetime
    valid_until: datetime | None
    expired: bool
    own_context: str  # JSON object: the indicator's own keys
    shared_context: str | None  # JSON object: the layer shared with its package, or None

    def stored(self) -> StoredObservable:
        """The :class:`StoredObservable` of this row (its context merged)."""
        # The fields up to ``expired`` are StoredObservable's, in its order.
        return StoredObservable(*self[:8], _context(self.shared_context, self.own_context))


# --- time and value helpers -------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def _to_db(value: datetime | None) -> datetime | None:
    """Aware (or naive meaning UTC) → naive UTC for storage."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise FeedStoreError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _from_db(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _micros(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


def _parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from a context (``2026-11-01T00:00:00Z``, no zone = UTC), else None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        return None


_KINDS: Final = {kind.value: kind.value for kind in Kind}


def kind_filter(text: str) -> str:
    """The kind that a browse or export filter names, in any case (``IPV4`` is ``ipv4``).

    The one rule for every face that takes a kind from a user (``feedgate observables --kind``,
    ``GET /api/v1/observables?kind=``), so that they accept and refuse the same words; a
    ValueError's message is the one line they show for another word.
    """
    kind = _KINDS.get(text.strip().lower())
    if kind is None:
        raise ValueError(f"{text[:40]!r} is not a kind: choose from {', '.join(_KINDS)}")
    return kind


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _live_by_id() -> sa.ColumnElement[bool]:
    """Live (not expired), in a form no index serves, for reads in id order.

    ``expired = 0`` (or ``IS 0``) leads SQLite's planner, which has no statistics, to the
    ``(expired, kind)`` index, and then to sorting every live row by id before the first one
    comes out: once per page of a browse, once per keyset page of an export. ``IS NOT 1``
    (the same rows: the column is NOT NULL) leaves it the id order of the table itself.
    PostgreSQL plans by its statistics either way.
    """
    return observables_table.c.expired.is_not(True)


#: Rows an export fetches from the database at a time.
_EXPORT_CHUNK: Final = 2000
#: Distinct times an export keeps converted at once (a poll stamps its rows alike).
_EXPORT_CACHE: Final = 4096
#: Characters of shared context layers an export keeps at once. Rows are stored in key order,
#: so the rows of one package are scattered over their segment's: the layers of a segment
#: (thousands) must stay at hand for the cache to hit; the bound keeps memory flat beyond.
EXPORT_LAYER_BUDGET: Final = 16 * 1024**2
#: Layers looked up per query (SQLite's historical limit on variables is 999).
_LAYER_LOOKUP: Final = 900


class _Layers:
    """The text of shared context layers by (source, digest), read for a chunk of rows at a
    time (one ``IN`` query for the ones not at hand, not one query per row); the same text
    object for the rows of one layer while it is kept."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._texts: dict[tuple[int, bytes], str] = {}
        self._size = 0

    def load(self, rows: Sequence[Any]) -> None:
        """Have the layers of ``rows`` (source id first, layer digest last) at hand."""
        texts = self._texts
        missing: dict[int, set[bytes]] = {}
        for row in rows:
            digest = row[-1]
            if digest is not None and (row[0], digest) not in texts:
                missing.setdefault(row[0], set()).add(bytes(digest))
        if not missing:
            return
        if self._size >= EXPORT_LAYER_BUDGET:
            texts.clear()
            self._size = 0
        layers = shared_contexts
        for sid, digests in missing.items():
            keys = sorted(digests)
            for start in range(0, len(keys), _LAYER_LOOKUP):
                query = sa.select(layers.c.digest, layers.c.context).where(
                    layers.c.source_id == sid,
                    layers.c.digest.in_(keys[start : start + _LAYER_LOOKUP]),
                )
                for digest, text in self._conn.execute(query):
                    texts[(sid, bytes(digest))] = text
                    self._size += len(text)

    def text(self, sid: int, digest: bytes) -> str | None:
        return self._texts.get((sid, digest))


class _Moments:
    """Stored times (SQLite's text, PostgreSQL's naive datetimes) as aware UTC datetimes,
    each distinct one converted once: the rows of a poll share a handful of times."""

    def __init__(self) -> None:
        #: raw → converted, for the callers' fast path (``known.get(raw) or moment(raw)``)
        self.known: dict[Any, datetime] = {}

    def __call__(self, raw: Any) -> datetime:
        seen = self.known
        found = seen.get(raw)
        if found is None:
            if len(seen) >= _EXPORT_CACHE:
                seen.clear()
            moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
            found = seen[raw] = moment.replace(tzinfo=UTC)
        return found


# --- the store --------------------------------------------------------------------------------


def _with_layers(joined: Any) -> Any:
    """``joined`` (observables and more) with each observable's shared context layer."""
    o, layers = observables_table, shared_contexts
    return joined.outerjoin(
        layers, sa.and_(layers.c.source_id == o.c.source_id, layers.c.digest == o.c.shared_digest)
    )


def _context(shared: str | None, own: str) -> dict[str, Any]:
    """An observable's whole context: its shared layer with the indicator's own keys over it
    (the order and values :class:`feedgate.observables.LayeredContext` reads)."""
    context: dict[str, Any] = json.loads(own)
    if shared is None:
        return context
    return {**json.loads(shared), **context}


class FeedStore:
    """The manager's feed data over an engine from :func:`feedgate.db.engine`.

    Methods are thread-safe (each uses its own connection and transaction); several processes
    may share one database. Writers on SQLite use ``BEGIN IMMEDIATE``.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        #: Bytes of rows a poll segment keeps in memory before spilling them to the database
        #: (see :mod:`feedgate.feeds._ingest`); lower it to trade speed for memory.
        self.segment_memory_budget = MEMORY_BUDGET
        #: Sources this process knows have no unused shared layers: expiry looked since a
        #: segment last moved a row off a layer (see _drop_unused_layers); expiry looks for the
        #: others.
        self._layers_clean: set[int] = set()
        migrate.upgrade(engine, "feeds")  # an empty or create_all database, or one behind
        with self._write() as conn:
            for name, value in (("version", 0), ("schema_version", int(SCHEMA_VERSION))):
                row = conn.execute(
                    sa.select(counters.c.value).where(counters.c.name == name)
                ).first()
                if row is None:
                    conn.execute(counters.insert().values(name=name, value=value))

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()

    # --- plumbing ---------------------------------------------------------------------------

    def _write(self) -> AbstractContextManager[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        return write_transaction(self.engine)

    def _read(self) -> AbstractContextManager[sa.Connection]:
        """A read transaction: one consistent snapshot for all its queries."""
        return read_transaction(self.engine)

    @staticmethod
    def _bump(conn: sa.Connection) -> None:
        conn.execute(
            counters.update().where(counters.c.name == "version").values(value=counters.c.value + 1)
        )

    @staticmethod
    def _source_id(conn: sa.Connection, name: str) -> int:
        row = conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).first()
        if row is None:
            raise FeedStoreError(f"no source named {name}")
        return int(row[0])

    # --- sources ----------------------------------------------------------------------------

    @staticmethod
    def _source_row(source: Source) -> dict[str, Any]:
        from . import secrets

        secret_name = username_is_secret(source)
        return {
            "name": source.name,
            "description": source.description,
            "enabled": bool(source.enabled),
            "hostname": source.hostname,
            "port": int(source.port),
            "use_https": bool(source.use_https),
            "poll_path": source.poll_path,
            "discovery_path": source.discovery_path,
            "collection": source.collection,
            "taxii_version": source.taxii_version,
            "username": None if secret_name else source.username,
            "username_enc": (
                secrets.encrypt(source.username)
                if secret_name and source.username is not None
                else None
            ),
            "username_secret": secret_name,
            "password_enc": None if source.password is None else secrets.encrypt(source.password),
            "cert_file": source.cert_file,
            "key_file": source.key_file,
            "key_password_enc": (
                None if source.key_password is None else secrets.encrypt(source.key_password)
            ),
            "ca_cert": source.ca_cert,
            "verify_ssl": bool(source.verify_ssl),
            "proxy_url": source.proxy_url,
            "polling_interval_us": _micros(source.polling_interval),
            "age_us": _micros(source.age),
            "poll_segment_us": _micros(source.poll_segment),
            "max_retries": int(source.max_retries),
            "timeout_us": _micros(source.timeout),
            "enforce": json.dumps(sorted(str(k) for k in source.enforce)),
            "fp_gate": bool(source.fp_gate),
            "mode": source.mode,
        }

    @staticmethod
    def _source(row: Any) -> Source:
        from . import secrets

        unreadable: set[str] = set()

        def secret(name: str, token: str | None) -> str | None:
            if token is None:
                return None
            try:
                return secrets.decrypt(token)
            except secrets.SecretError:  # the source still lists, shows and edits
                unreadable.add(name)
                return None

        return Source(
            name=row.name,
            description=row.description,
            enabled=bool(row.enabled),
            hostname=row.hostname,
            port=int(row.port),
            use_https=bool(row.use_https),
            poll_path=row.poll_path,
            discovery_path=row.discovery_path,
            collection=row.collection,
            taxii_version=row.taxii_version,
            username=(
                row.username if row.username_enc is None else secret("username", row.username_enc)
            ),
            username_secret=bool(row.username_secret),
            password=secret("password", row.password_enc),
            cert_file=row.cert_file,
            key_file=row.key_file,
            key_password=secret("key_password", row.key_password_enc),
            ca_cert=row.ca_cert,
            verify_ssl=bool(row.verify_ssl),
            proxy_url=row.proxy_url,
            polling_interval=timedelta(microseconds=row.polling_interval_us),
            age=timedelta(microseconds=row.age_us),
            poll_segment=timedelta(microseconds=row.poll_segment_us),
            max_retries=int(row.max_retries),
            timeout=timedelta(microseconds=row.timeout_us),
            enforce=frozenset(json.loads(row.enforce)),
            fp_gate=bool(row.fp_gate),
            mode=str(row.mode),
            unreadable_secrets=frozenset(unreadable),
        )

    def add_source(self, source: Source) -> None:
        """Store a new source; :class:`FeedStoreError` if one of that name exists."""
        values = self._source_row(source)  # encrypt before taking the lock
        with self._write() as conn:
            exists = conn.execute(
                sa.select(sources.c.id).where(sources.c.name == source.name)
            ).first()
            if exists is not None:
                raise FeedStoreError(f"a source named {source.name} exists")
            conn.execute(sources.insert().values(**values))
            self._bump(conn)

    def update_source(self, source: Source) -> None:
        """Replace the stored source of the same name (status and observables are kept).

        A secret the current key cannot decrypt (``Source.unreadable_secrets``) stays as stored:
        restoring the old key makes it work again.
        """
        values = self._source_row(source)
        for name in source.unreadable_secrets:
            del values[f"{name}_enc"]
            values.pop(name, None)  # the user name's clear column stays as stored too
        with self._write() as conn:
            done = conn.execute(
                sources.update().where(sources.c.name == source.name).values(**values)
            )
            if done.rowcount == 0:
                raise FeedStoreError(f"no source named {source.name}")
            self._bump(conn)

    def delete_source(self, name: str) -> bool:
        """Delete a source with its observables and status; False if there was none.

        Its log rows stay (they name the source, they do not belong to it).
        """
        with self._write() as conn:
            row = conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).first()
            if row is None:
                return False
            sid = int(row[0])
            # Explicit deletes: PostgreSQL and SQLite both cascade, but a SQLite connection
            # opened without foreign_keys=ON would not.
            conn.execute(observables_table.delete().where(observables_table.c.source_id == sid))
            conn.execute(shared_contexts.delete().where(shared_contexts.c.source_id == sid))
            conn.execute(status_table.delete().where(status_table.c.source_id == sid))
            conn.execute(sources.delete().where(sources.c.id == sid))
            self._bump(conn)
            return True

    def get_source(self, name: str) -> Source | None:
        with self._read() as conn:
            row = conn.execute(sa.select(sources).where(sources.c.name == name)).first()
        return None if row is None else self._source(row)

    def source_names(self) -> list[str]:
        """The sources' names, by name (without reading, or decrypting, the rest)."""
        with self._read() as conn:
            return list(conn.execute(sa.select(sources.c.name).order_by(sources.c.name)).scalars())

    def fp_gates(self) -> dict[str, bool]:
        """Each source's false-positive gate switch, by name: what a scanner needs of the
        sources besides the matcher's snapshot (nothing decrypted, no secret key needed)."""
        with self._read() as conn:
            rows = conn.execute(sa.select(sources.c.name, sources.c.fp_gate)).all()
        return {name: bool(gate) for name, gate in rows}

    def source_modes(self) -> dict[str, str]:
        """Each source's mode (``enforce`` or ``monitor``, :data:`~.sources.MODES`), by name:
        the sibling of :meth:`fp_gates` a scanner reads to know whose matches only count as
        "would have"."""
        with self._read() as conn:
            rows = conn.execute(sa.select(sources.c.name, sources.c.mode)).all()
        return {name: str(mode) for name, mode in rows}

    def list_sources(self) -> list[Source]:
        """All sources, by name."""
        with self._read() as conn:
            rows = conn.execute(sa.select(sources).order_by(sources.c.name)).all()
        return [self._source(row) for row in rows]

    # --- poll state -------------------------------------------------------------------------

    def watermark(self, name: str) -> datetime | None:
        """The end of the last committed segment of ``name`` (aware UTC), or None."""
        return self.status(name).watermark

    def status(self, name: str) -> SourceStatus:
        """The poll status of ``name``; :class:`FeedStoreError` for an unknown source."""
        with self._read() as conn:
            sid = self._source_id(conn, name)
            row = conn.execute(
                sa.select(status_table).where(status_table.c.source_id == sid)
            ).first()
        if row is None:
            return SourceStatus()
        values: dict[str, Any] = {}
        for key in _STATUS_FIELDS:
            value = getattr(row, key)
            values[key] = _from_db(value) if key in _STATUS_TIMES else value
        return SourceStatus(**values)

    def set_status(self, name: str, **fields: object) -> None:
        """Set some fields of the status of ``name`` (the others are kept)."""
        unknown = set(fields) - _STATUS_FIELDS
        if unknown:
            raise FeedStoreError(f"unknown status field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if key in _STATUS_TIMES:
                values[key] = _to_db(value)  # type: ignore[arg-type]
            elif key == "result" and value is not None and value not in _RESULTS:
                raise FeedStoreError(f"status result must be one of {sorted(_RESULTS)}")
            else:
                values[key] = value
        with self._write() as conn:
            sid = self._source_id(conn, name)
            self._put_status(conn, sid, values)

    @staticmethod
    def _put_status(conn: sa.Connection, sid: int, values: dict[str, Any]) -> None:
        if not values:
            return
        done = conn.execute(
            status_table.update().where(status_table.c.source_id == sid).values(**values)
        )
        if done.rowcount == 0:
            conn.execute(status_table.insert().values(source_id=sid, **values))

    # --- ingest -----------------------------------------------------------------------------

    @contextmanager
    def segment(self, name: str) -> Iterator[Segment]:
        """One poll segment of source ``name`` as one transaction (see the module doc).

        Committed when the block exits normally; on an exception nothing of it is stored and
        the watermark does not move.
        """
        with self.engine.connect() as conn:
            with conn.begin():
                sid = self._source_id(conn, name)
            seg = Segment(self, conn, sid, name)
            try:
                seg._open()
                yield seg
            except BaseException:
                seg._discard()
                raise
            else:
                seg._commit()
            finally:
                seg._cleanup()

    def expire(self, name: str, now: datetime) -> int:
        """Mark observables of ``name`` expired that were not seen for longer than the source's
        age, or whose ``valid_until`` has passed; how many were marked."""
        moment = _to_db(now)
        assert moment is not None
        o = observables_table
        with self._write() as conn:
            row = conn.execute(
                sa.select(sources.c.id, sources.c.age_us).where(sources.c.name == name)
            ).first()
            if row is None:
                raise FeedStoreError(f"no source named {name}")
            sid, age_us = int(row[0]), int(row[1])
            cutoff = moment - timedelta(microseconds=age_us)
            version = self._next_version(conn)
            due = sa.and_(
                o.c.source_id == sid,
                o.c.expired.is_(False),
                sa.or_(
                    o.c.last_seen < cutoff,
                    sa.and_(o.c.valid_until.is_not(None), o.c.valid_until <= moment),
                ),
            )
            if self._postgres:
                # Holding the version counter's row, wait for no row lock: a segment of the
                # source in progress may hold one and wait, at its commit, for the counter's
                # row. Its rows are left for the next expiry (see "Versions" in _ingest).
                due = o.c.id.in_(sa.select(o.c.id).where(due).with_for_update(skip_locked=True))
            done = conn.execute(o.update().where(due).values(expired=True, changed_version=version))
            count = int(done.rowcount or 0)
            if count:
                self._bump(conn)
            if sid not in self._layers_clean and self._drop_unused_layers(conn, sid):
                self._layers_clean.add(sid)
        return count

    def _next_version(self, conn: sa.Connection) -> int:
        """The version the write transaction on ``conn`` will bump the counter to, the
        counter's row locked on PostgreSQL until the commit (see "Versions" in
        :mod:`feedgate.feeds._ingest`; SQLite's writer lock is the whole database's)."""
        query = sa.select(counters.c.value).where(counters.c.name == "version")
        if self._postgres:
            query = query.with_for_update()
        return int(conn.execute(query).scalar_one()) + 1

    def _drop_unused_layers(self, conn: sa.Connection, sid: int) -> bool:
        """Delete the source's shared context layers that no observable refers to any more
        (their pulse was revised, or its observables moved to another pulse); False when that
        has to wait. One pass over the source's rows: done by :meth:`expire` only when a
        segment committed since moved a row off a layer, and once per source in a process
        (for whatever a process that stopped between a segment and its expiry left)."""
        o, layers = observables_table, shared_contexts
        if self._postgres:
            # Not while a segment of the source is in progress on another connection: its rows
            # may refer to a layer no committed row does (see _ingest.layers_lock). The layers
            # wait for the next expiry then.
            key = sa.cast(layers_lock(sid), sa.BigInteger)
            if not conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key))).scalar():
                return False
            # NOT EXISTS, an anti-join: PostgreSQL runs "NOT IN (subquery)" as a hashed subplan
            # only while the source's rows fit in work_mem, and past that (a few 100k rows)
            # scans them once per layer.
            used = sa.exists().where(o.c.source_id == sid, o.c.shared_digest == layers.c.digest)
            conn.execute(layers.delete().where(layers.c.source_id == sid, ~used))
            return True
        # NOT IN on SQLite: it builds the subquery's list once (a correlated NOT EXISTS would
        # scan the source's rows once per layer: shared_digest has no index).
        in_use = sa.select(o.c.shared_digest).where(
            o.c.source_id == sid, o.c.shared_digest.is_not(None)
        )
        conn.execute(
            layers.delete().where(layers.c.source_id == sid, layers.c.digest.not_in(in_use))
        )
        return True

    # --- log --------------------------------------------------------------------------------

    def add_log(
        self, source: str | None, level: str, message: str, at: datetime | None = None
    ) -> int:
        """Append a threat-feed log row; its id (ids increase)."""
        if level not in LEVELS:
            raise FeedStoreError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
        when = _to_db(at or utcnow())
        with self._write() as conn:
            done = conn.execute(
                log_table.insert().values(at=when, level=level, source=source, message=message)
            )
            key = done.inserted_primary_key
            assert key is not None
            return int(key[0])

    def log_entries(
        self,
        source: str | None = None,
        after_id: int = 0,
        limit: int = 1000,
        *,
        before_id: int | None = None,
        newest_first: bool = False,
        level: str | None = None,
    ) -> list[LogEntry]:
        """Log rows with ``after_id`` < id < ``before_id``, oldest first (newest first with
        ``newest_first``: the newest ``limit`` rows), at most ``limit``, only those of
        ``level`` when given. The one query of the CLI's ``feedgate log``, the REST API's
        ``/log`` and the console's log page, so they list the same rows."""
        query = sa.select(log_table).where(log_table.c.id > after_id)
        if level is not None:
            query = query.where(log_table.c.level == level)
        if before_id is not None:
            query = query.where(log_table.c.id < before_id)
        if source is not None:
            query = query.where(log_table.c.source == source)
        order = log_table.c.id.desc() if newest_first else log_table.c.id
        query = query.order_by(order).limit(max(0, limit))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            LogEntry(int(r.id), r.at.replace(tzinfo=UTC), r.level, r.source, r.message)
            for r in rows
        ]

    def last_log_id(self) -> int:
        """The newest log row's id (0 for none): pass it as ``after_id`` to see what follows."""
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(log_table.c.id))).scalar() or 0)

    # --- browse -----------------------------------------------------------------------------

    def _filtered(
        self,
        query: sa.Select[Any],
        source: str | None,
        kind: str | None,
        search: str | None,
        live_only: bool,
        by_id: bool = False,
    ) -> sa.Select[Any]:
        """``query`` narrowed to the filters; ``by_id`` for one read in id order (see
        :func:`_live_by_id`)."""
        o = observables_table
        if source is not None:
            query = query.where(sources.c.name == source)
        if kind is not None:
            query = query.where(o.c.kind == kind)
        if live_only:
            query = query.where(_live_by_id() if by_id else o.c.expired.is_(False))
        if search:
            pattern = _like(search)
            query = query.where(
                sa.or_(
                    o.c.value.ilike(pattern, escape="\\"),
                    o.c.context.ilike(pattern, escape="\\"),
                    shared_contexts.c.context.ilike(pattern, escape="\\"),
                )
            )
        return query

    def _export_query(self, source: str | None, search: str | None) -> sa.Select[Any]:
        """The columns of :class:`ExportRow`, no join unless a filter needs one: the source's
        name and the shared layer's text are looked up once each, not read in every row."""
        o = observables_table
        times: list[Any] = [o.c.first_seen, o.c.last_seen, o.c.valid_until]
        if not self._postgres:
            # The stored text, parsed by _Moments once per distinct time (SQLAlchemy's
            # processor parses every row's with a regular expression).
            times = [sa.type_coerce(column, sa.String) for column in times]
        joined: Any = o.join(sources, sources.c.id == o.c.source_id) if source is not None else o
        return sa.select(
            o.c.source_id,
            o.c.kind,
            o.c.value,
            o.c.original_type,
            *times,
            o.c.expired,
            o.c.context,
            o.c.shared_digest,
        ).select_from(_with_layers(joined) if search else joined)

    def _browse_query(self) -> sa.Select[Any]:
        o = observables_table
        return sa.select(
            o.c.id,
            sources.c.name.label("source"),
            o.c.kind,
            o.c.value,
            o.c.original_type,
            o.c.first_seen,
            o.c.last_seen,
            o.c.valid_until,
            o.c.expired,
            o.c.context,
            shared_contexts.c.context.label("shared_context"),
        ).select_from(_with_layers(o.join(sources, sources.c.id == o.c.source_id)))

    @staticmethod
    def _stored(row: Any) -> StoredObservable:
        return StoredObservable(
            source=row.source,
            kind=row.kind,
            value=row.value,
            original_type=row.original_type,
            first_seen=row.first_seen.replace(tzinfo=UTC),
            last_seen=row.last_seen.replace(tzinfo=UTC),
            valid_until=_from_db(row.valid_until),
            expired=bool(row.expired),
            context=_context(row.shared_context, row.context),
            id=int(row.id),
        )

    def observables(
        self,
        source: str | None = None,
        kind: str | None = None,
        search: str | None = None,
        live_only: bool = True,
        limit: int = 100,
        offset: int = 0,
        after_id: int | None = None,
    ) -> list[StoredObservable]:
        """A page of stored observables in storage (id) order. ``search`` looks for text in the
        value and the context (case-insensitive for ASCII). ``after_id``: only rows after that
        id, the keyset page that follows a page whose last row had it (no rows are skipped
        over to get there, as ``offset`` does: the next page of millions costs the first's)."""
        query = self._filtered(self._browse_query(), source, kind, search, live_only, by_id=True)
        if after_id is not None:
            query = query.where(observables_table.c.id > after_id)
        query = query.order_by(observables_table.c.id).limit(max(0, limit)).offset(max(0, offset))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [self._stored(row) for row in rows]

    def observable(self, observable_id: int) -> StoredObservable | None:
        """The stored observable of that id (expired or not), or None."""
        query = self._browse_query().where(observables_table.c.id == observable_id)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else self._stored(row)

    def iter_observables(
        self,
        source: str | None = None,
        kind: str | None = None,
        search: str | None = None,
        live_only: bool = True,
        batch: int = _EXPORT_CHUNK,
    ) -> Iterator[StoredObservable]:
        """Every matching observable in storage order, streamed (see :meth:`export_rows`)."""
        for row in self.export_rows(source, kind, search, live_only, batch):
            yield row.stored()

    def export_rows(
        self,
        source: str | None = None,
        kind: str | None = None,
        search: str | None = None,
        live_only: bool = True,
        batch: int = _EXPORT_CHUNK,
    ) -> Generator[ExportRow, None, None]:
        """Every matching observable in storage (id) order, as :class:`ExportRow` (contexts
        still JSON text), for exports of any size in flat memory.

        One query in one read transaction (one snapshot: a poll committing meanwhile is in it
        wholly or not at all), its rows streamed: a server-side cursor on PostgreSQL, SQLite's
        own stepping. Keyset pages of ``id > last`` cost a sort of every live row per page on
        SQLite (its planner takes the ``expired`` index), which made an export of 1M rows
        take hours. ``batch``: rows fetched from the database at a time. Close the iterator (or
        exhaust it) to end the transaction.
        """
        o = observables_table
        query = self._filtered(
            self._export_query(source, search), source, kind, search, live_only, by_id=True
        ).order_by(o.c.id)
        with self._read() as conn:
            names = {
                int(i): str(n) for i, n in conn.execute(sa.select(sources.c.id, sources.c.name))
            }
            layers = _Layers(conn)
            moment = _Moments()
            known = moment.known  # the converted times: a lookup, mostly, not a call
            make = tuple.__new__  # ExportRow(...) without its Python-level __new__
            text = layers.text
            for chunk in self._chunks(conn, query, max(1, batch)):
                layers.load(chunk)
                for sid, kind_, value, otype, first, last, until, expired, own, layer in chunk:
                    yield make(
                        ExportRow,
                        (
                            names[sid],
                            kind_,
                            value,
                            otype,
                            known.get(first) or moment(first),
                            known.get(last) or moment(last),
                            None if until is None else known.get(until) or moment(until),
                            bool(expired),
                            own,
                            None if layer is None else text(sid, layer),
                        ),
                    )

    def _chunks(
        self, conn: sa.Connection, query: sa.Select[Any], batch: int
    ) -> Iterator[Sequence[Any]]:
        """The rows of ``query`` in lists of ``batch``, streamed.

        PostgreSQL: a server-side cursor. SQLite: the compiled SQL on the driver's own cursor,
        whose rows are plain tuples (SQLAlchemy's result rows cost more per row than SQLite's
        own work; the query's columns need no result processing, see _export_query)."""
        if self._postgres:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
            yield from result.partitions()
            return
        compiled = query.compile(dialect=conn.dialect)
        values = compiled.construct_params()
        driver = conn.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        try:
            cursor.execute(str(compiled), [values[name] for name in compiled.positiontup or ()])
            while rows := cursor.fetchmany(batch):
                yield rows
        finally:
            cursor.close()

    def count_observables(
        self, source: str | None = None, kind: str | None = None, live_only: bool = True
    ) -> dict[str, int]:
        """How many observables there are, by kind."""
        o = observables_table
        query = sa.select(o.c.kind, sa.func.count()).select_from(
            o.join(sources, sources.c.id == o.c.source_id)
        )
        query = self._filtered(query, source, kind, None, live_only).group_by(o.c.kind)
        with self._read() as conn:
            return {str(k): int(n) for k, n in conn.execute(query)}

    def record_held(self, name: str, at: datetime) -> dict[str, int]:
        """Write how many live observables ``name`` holds per kind, as of ``at``, to the
        history the Reports page charts (:mod:`feedgate.feeds.held`: the day's last snapshot
        is kept, :data:`~feedgate.feeds.held.KEEP` long); the counts."""
        try:
            return held.record(self.engine, name, at)
        except held.UnknownSource as exc:
            raise FeedStoreError(str(exc)) from None

    def held_history(self, since: datetime | None = None) -> list[HeldCount]:
        """The snapshots :meth:`record_held` wrote from ``since`` (None: all kept) on."""
        return held.history(self.engine, since)

    def version(self) -> int:
        """The change counter (see the module doc)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(counters.c.value).where(counters.c.name == "version")
            ).one()
        return int(row[0])

"""The write side of one poll segment: observables in, one transaction out.

Why it looks like this (the ingest rate is what a gateway admin waits on after "Poll Now"):

* Rows are kept in memory, keyed by digest, until the segment commits; then they go into
  ``observables`` sorted by key in batches of :data:`BATCH_SIZE` ``executemany`` upserts, in one
  short write transaction that also moves the watermark. Sorting keeps the unique index's
  B-tree writes local; one transaction makes the segment all-or-nothing.
* SQLite has one writer lock per file. Holding it while a segment streams in (network time
  included) would block every other writer, the threat-feed log of this very poll included.
  Buffering in memory means the lock is held only for the final write. A segment too large for
  :data:`MEMORY_BUDGET` spills its rows (and shared context layers) into per-connection TEMP
  tables (which take no lock on the database file) and is merged from there with ``INSERT …
  SELECT`` at the end.
* On PostgreSQL (row locks only) a spill goes straight into ``observables`` inside the
  segment's transaction.
* The SQLite hot path sends plain SQL with values already in SQLAlchemy's storage format
  (``YYYY-MM-DD HH:MM:SS.ffffff`` for times): compiling a Core statement and running type
  processors per row cost more than SQLite's own work.

Counting: :meth:`Segment.upsert` returns (new, updated) for distinct observables of the segment
as they compare with what is stored when it is called: absent or expired counts as new (the
matcher gains it), live as updated. Repeats within one segment are counted once.

Versions: a row's ``changed_version`` is the store's version (:meth:`FeedStore.version`) of the
commit that last made it live or expired, so that a matcher can read "what changed since the
version I hold" (``changed_version > V``) in one index range. It must be the number the commit
makes, and commits must make their numbers in commit order, or a reader that saw version V could
miss a row committed later with a number ≤ V:

* SQLite: one writer; the segment's write transaction reads the counter (the number it will
  bump it to is that plus one) and writes it into the upsert's text.
* PostgreSQL: the counter's row is locked (``FOR UPDATE``) at commit, before the final flush, so
  the bumps, and so the numbers, go in commit order. Rows a segment flushed earlier (a spill)
  carry a marker of their own (a negative number) that the commit rewrites to the version once
  it has the lock. Expiry locks the counter's row first and then expires only rows no one else
  holds (``SKIP LOCKED``): it never waits for a row while holding the counter, so a segment
  waiting at its commit for the counter cannot deadlock with it. (Two segments of one source
  at once, a node that lost its lease mid-segment, can still wait on each other's rows; the
  database then aborts one and its poll runs again.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from secrets import randbits
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from feedgate.observables import (
    EncodedContext,
    EncodedContexts,
    Kind,
    LayeredContext,
    Observable,
    ObservableBatch,
    context_json,
    context_value,
    observable_digest,
)

from .schema import observables_table, shared_contexts

if TYPE_CHECKING:
    from .store import FeedStore

#: Rows per ``executemany`` statement.
BATCH_SIZE: Final = 5000
#: Roughly how many bytes of rows a segment keeps in memory before it spills (see module doc);
#: the default of :attr:`FeedStore.segment_memory_budget`.
MEMORY_BUDGET: Final = 32 * 1024**2
#: Keys per ``IN (…)`` lookup (SQLite's historical limit on variables is 999).
_LOOKUP_CHUNK: Final = 900
#: Per-row bookkeeping in the in-memory buffer, beyond the value and context text: measured
#: with tracemalloc (the row tuple, its dict entry, the digest, the counting set's entry and the
#: two strings' headers come to ~400 bytes on CPython 3.11).
_ROW_OVERHEAD: Final = 400

_SQLITE_TIME: Final = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's DateTime storage format on SQLite
_COLUMNS: Final = (
    "source_id, digest, kind, value, original_type, first_seen, last_seen, valid_until,"
    " expired, context, shared_digest, changed_version"
)
# changed_version (see "Versions" in the module doc): the commit's version for a new row and for
# one whose liveness flips (``observables.expired`` is the stored row's value: SET expressions
# read the row as it was), the stored number for a row merely seen again.
_ON_CONFLICT_SQLITE: Final = (
    "ON CONFLICT (source_id, digest) DO UPDATE SET"
    " last_seen = max(observables.last_seen, excluded.last_seen),"
    " valid_until = excluded.valid_until, original_type = excluded.original_type,"
    " context = excluded.context, expired = excluded.expired,"
    " shared_digest = excluded.shared_digest,"
    " changed_version = CASE WHEN observables.expired = excluded.expired"
    " THEN observables.changed_version ELSE excluded.changed_version END"
)
# {version}: the commit's version, an int written into the text (one statement per commit; a
# parameter would have to be appended to every row's tuple).
_UPSERT_SQLITE: Final = (
    f"INSERT INTO observables ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {{version}}) "
    + _ON_CONFLICT_SQLITE
)
_LAYERS_SQLITE: Final = (
    "INSERT INTO shared_contexts (source_id, digest, context) VALUES (?, ?, ?)"
    " ON CONFLICT (source_id, digest) DO NOTHING"
)
_STAGE_DDL: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS feed_stage (digest BLOB PRIMARY KEY, kind VARCHAR(16),"
    " value TEXT, original_type TEXT, seen_at DATETIME, valid_until DATETIME, expired BOOLEAN,"
    " context TEXT, shared_digest BLOB)"
)
_STAGE_UPSERT: Final = (
    "INSERT INTO temp.feed_stage (digest, kind, value, original_type, seen_at, valid_until,"
    " expired, context, shared_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (digest) DO UPDATE SET"
    " seen_at = max(feed_stage.seen_at, excluded.seen_at), valid_until = excluded.valid_until,"
    " original_type = excluded.original_type, context = excluded.context,"
    " expired = excluded.expired, shared_digest = excluded.shared_digest"
)
# A spilled segment's shared context layers wait beside its rows, for the same reason.
_STAGE_LAYERS_DDL: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS feed_stage_layers (digest BLOB PRIMARY KEY, context TEXT)"
)
_STAGE_LAYERS_UPSERT: Final = (
    "INSERT INTO temp.feed_stage_layers (digest, context) VALUES (?, ?)"
    " ON CONFLICT (digest) DO NOTHING"
)
# "INSERT … SELECT … ON CONFLICT" needs a WHERE on SQLite to parse.
_STAGE_LAYERS_MERGE: Final = (
    "INSERT INTO shared_contexts (source_id, digest, context) SELECT ?, digest, context"
    " FROM temp.feed_stage_layers WHERE true ORDER BY digest"
    " ON CONFLICT (source_id, digest) DO NOTHING"
)
_STAGE_MERGE: Final = (
    f"INSERT INTO observables ({_COLUMNS}) SELECT ?, digest, kind, value, original_type,"
    " seen_at, seen_at, valid_until, expired, context, shared_digest, ? FROM temp.feed_stage"
    " WHERE true ORDER BY digest " + _ON_CONFLICT_SQLITE
)
_VERSION_SQL: Final = "SELECT value FROM feed_counters WHERE name = 'version'"

# Buffered row, already the upsert's parameters (_COLUMNS): (source_id, digest, kind, value,
# original_type, first_seen, last_seen, valid_until, expired, context, shared_digest); the
# context is the indicator's own keys, the shared layer is in _layers.
_Row = tuple[int, bytes, str, str, "str | None", Any, Any, Any, bool, str, "bytes | None"]


_KIND_NAMES: Final = {kind: kind.value for kind in Kind}


def layer_digest(text: str) -> bytes:
    """The stored key of a shared context layer within its source: SHA-256 of its JSON."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


_LAYERS_LOCK: Final = int.from_bytes(
    hashlib.sha256(b"feedgate shared contexts").digest()[:4], "big"
)


def layers_lock(source_id: int) -> int:
    """The PostgreSQL advisory lock (a signed 64-bit number) that keeps a source's unused
    shared context layers from being dropped while a segment of it is in progress.

    A segment holds it shared for its whole transaction; :meth:`FeedStore.expire` tries it
    exclusively before it drops layers no row refers to, and leaves them for its next run when
    it cannot have it. Without it, a segment in progress on another connection (two polls of one
    source: a node that lost its lease mid-segment) could have written rows over a layer that
    is already stored but that no committed row refers to; expiry would drop that layer, and
    the rows would commit pointing at nothing (their contexts losing the package's keys).
    """
    key = (_LAYERS_LOCK << 32) | (source_id & 0xFFFFFFFF)
    return key - (1 << 64) if key >= 1 << 63 else key


class Segment:
    """The write side of one poll segment; made by :meth:`FeedStore.segment`."""

    def __init__(self, store: FeedStore, conn: sa.Connection, source_id: int, name: str) -> None:
        from .store import FeedStoreError, _parse_time, _to_db, utcnow

        self._error = FeedStoreError
        self._parse_time = _parse_time
        self._to_db = _to_db
        self._utcnow = utcnow
        self._store = store
        self._conn = conn
        self._sid = source_id
        self.name = name
        self._postgres = store._postgres
        self._buffer: dict[bytes, _Row] = {}
        self._layers: dict[bytes, str] = {}  # shared context layers to write: digest → JSON
        self._moved_layers = False  # see FeedStore.expire
        self._buffered_bytes = 0
        self._spilled = False
        self._seen: set[int] = set()  # hashes of the keys already counted in this segment
        self._wrote = False
        self._watermark: datetime | None = None
        self._closed = False
        self._txn: sa.RootTransaction | None = None
        #: PostgreSQL: the changed_version of rows flushed before the commit knows its version
        #: (see "Versions" in the module doc); unique to the segment, negative like no version.
        self._marker = -1 - randbits(62)
        self._marked = False

    # --- lifecycle (called by FeedStore.segment) --------------------------------------------

    def _open(self) -> None:
        if self._postgres:
            self._txn = self._conn.begin()
            # Shared: segments do not wait for each other, only for an expiry dropping unused
            # layers of the source (a short transaction); see layers_lock.
            lock = sa.func.pg_advisory_xact_lock_shared(
                sa.cast(layers_lock(self._sid), sa.BigInteger)
            )
            self._conn.execute(sa.select(lock))

    def _discard(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._layers.clear()
        if self._txn is not None and self._txn.is_active:
            self._txn.rollback()

    def _commit(self) -> None:
        self._closed = True
        conn = self._conn
        if self._postgres:
            assert self._txn is not None
            version = int(conn.exec_driver_sql(_VERSION_SQL + " FOR UPDATE").scalar_one()) + 1
            self._flush_postgres(version)
            if self._marked:
                from .schema import observables_table as o

                conn.execute(
                    o.update()
                    .where(o.c.changed_version == self._marker)
                    .values(changed_version=version)
                )
            self._finish_in(conn)
            self._txn.commit()
            return
        if self._spilled:
            self._spill_sqlite()
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            version = int(conn.exec_driver_sql(_VERSION_SQL).scalar_one()) + 1
            if self._layers:
                sid = self._sid
                rows = [(sid, key, text) for key, text in sorted(self._layers.items())]
                conn.exec_driver_sql(_LAYERS_SQLITE, rows)
            if self._spilled:
                conn.exec_driver_sql(_STAGE_LAYERS_MERGE, (self._sid,))
                conn.exec_driver_sql(_STAGE_MERGE, (self._sid, version))
            elif self._buffer:
                self._upsert_sqlite(conn, version)
            self._finish_in(conn)
        self._buffer.clear()
        self._layers.clear()

    def _cleanup(self) -> None:
        if self._spilled and not self._postgres:
            try:
                self._conn.execution_options(sqlite_immediate=False)
                with self._conn.begin():
                    self._conn.exec_driver_sql("DROP TABLE IF EXISTS temp.feed_stage")
                    self._conn.exec_driver_sql("DROP TABLE IF EXISTS temp.feed_stage_layers")
            except sa.exc.SQLAlchemyError:  # pragma: no cover - the connection is going anyway
                self._conn.invalidate()

    def _finish_in(self, conn: sa.Connection) -> None:
        if self._watermark is not None:
            self._store._put_status(conn, self._sid, {"watermark": self._watermark})
        if self._wrote:
            self._store._bump(conn)
        if self._moved_layers:
            self._store._layers_clean.discard(self._sid)

    # --- the poller's side ------------------------------------------------------------------

    def upsert(
        self, observables: Iterable[Observable] | ObservableBatch, seen_at: datetime
    ) -> tuple[int, int]:
        """Take ``observables`` as seen at ``seen_at``; (new, updated) distinct observables
        not counted earlier in this segment. Written when the segment commits."""
        if self._closed:
            raise self._error("the segment is over")
        batch = (
            observables
            if isinstance(observables, ObservableBatch)
            else ObservableBatch.of(observables)
        )
        seen_db = self._to_db(seen_at)
        assert seen_db is not None
        now = self._to_db(self._utcnow())
        assert now is not None
        sqlite = not self._postgres
        seen = seen_db.strftime(_SQLITE_TIME) if sqlite else seen_db
        # Per context (shared by the observables of one indicator): its own keys' text, the
        # digest of its shared layer, valid-until, expired.
        if batch.encoded is not None:
            per_context = self._encoded_contexts(batch.encoded, now, sqlite)
        else:
            per_context = self._contexts(batch.contexts, now, sqlite)
        buffer = self._buffer
        counted = self._seen
        fresh: list[bytes] = []
        size = 0
        moved = False  # a row may leave a shared layer: expiry then looks for unused layers
        names = _KIND_NAMES
        sid = self._sid
        # The hottest loop of a poll (once per observable). Digests come from the parse workers
        # (or from here), and the counting set is consulted only for a key the segment has not
        # buffered yet.
        given = batch.digests
        if given is None:
            given = [
                observable_digest(kind, value)
                for kind, value in zip(batch.kinds, batch.values, strict=True)
            ]
        for key, kind, value, original, number in zip(
            given,
            batch.kinds,
            batch.values,
            batch.original_types,
            batch.context_numbers,
            strict=True,
        ):
            name = names[kind]
            text, until, expired, layer = per_context[number]
            old = buffer.get(key)
            last = seen if old is None or old[6] <= seen else old[6]  # never moves backwards
            buffer[key] = (sid, key, name, value, original, last, last, until, expired, text, layer)
            if old is not None:  # again in this segment: counted already
                moved = moved or old[10] != layer
                continue
            size += len(value) + len(text) + _ROW_OVERHEAD
            mark = hash(key)  # bytes cache their hash: computed once, by buffer.get
            if mark not in counted:
                counted.add(mark)
                fresh.append(key)
            else:  # buffered before a spill, maybe with another layer
                moved = True
        self._buffered_bytes += size
        self._wrote = self._wrote or bool(buffer)
        new = updated = 0
        if fresh:
            fresh.sort()  # in index order, the lookups touch each B-tree page once: 2-3x faster
            existing = self._existing(fresh)
            for key in fresh:
                stored = existing.get(key)
                if stored is None or stored[0]:  # absent or expired: new (live again)
                    new += 1
                else:
                    updated += 1
                if stored is not None and stored[1] is not None and stored[1] != buffer[key][10]:
                    moved = True  # the stored row leaves its layer
        self._moved_layers = self._moved_layers or moved
        if self._buffered_bytes >= self._store.segment_memory_budget:
            if self._postgres:
                self._flush_postgres(self._marker)
            else:
                self._spill_sqlite()
        return new, updated

    def _until(self, value: Any, now: datetime, sqlite: bool) -> tuple[Any, bool]:
        """A context's valid-until as stored, and whether it has passed."""
        moment = self._parse_time(value)
        if moment is None:
            return None, False
        return (moment.strftime(_SQLITE_TIME) if sqlite else moment), moment <= now

    def _layer(self, text: str) -> bytes:
        """The digest of a shared layer, kept to be written with the segment."""
        layer = layer_digest(text)
        if layer not in self._layers:
            self._layers[layer] = text
            self._buffered_bytes += len(text) + _ROW_OVERHEAD
        return layer

    def _contexts(
        self, contexts: Sequence[Mapping[str, Any]], now: datetime, sqlite: bool
    ) -> list[tuple[str, Any, bool, bytes | None]]:
        """(own text, valid-until, expired, layer digest) of each context."""
        out = []
        layer_keys: dict[int, bytes | None] = {}  # id(shared layer) → digest, for this batch
        for context in contexts:
            until, expired = self._until(
                context_value(context, "valid_until") if context else None, now, sqlite
            )
            layer: bytes | None = None
            if type(context) is LayeredContext:
                shared = context.shared
                if id(shared) in layer_keys:
                    layer = layer_keys[id(shared)]
                elif shared:
                    layer = self._layer(context_json(shared))
                layer_keys[id(shared)] = layer
                own = context.own
                text = context_json(own) if own else "{}"
            else:
                text = context_json(context) if context else "{}"
            out.append((text, until, expired, layer))
        return out

    def _encoded_contexts(
        self, encoded: EncodedContexts, now: datetime, sqlite: bool
    ) -> list[tuple[str, Any, bool, bytes | None]]:
        """What :meth:`_contexts` says, read from the JSON the workers sent, with no mapping
        made per context (a context is decoded only if it may hold a valid-until)."""
        layers = [None if text == "{}" else self._layer(text) for text in encoded.layers]
        out = []
        for text, number in zip(encoded.own, encoded.layer_of, strict=True):
            value = None
            if '"valid_until"' in text or (
                number >= 0 and '"valid_until"' in encoded.layers[number]
            ):
                own = EncodedContext(text)
                context = (
                    own
                    if number < 0
                    else LayeredContext(EncodedContext(encoded.layers[number]), own)
                )
                value = context_value(context, "valid_until")
            until, expired = self._until(value, now, sqlite) if value is not None else (None, False)
            out.append((text, until, expired, layers[number] if number >= 0 else None))
        return out

    def finish(self, watermark: datetime) -> None:
        """Move the source's watermark to ``watermark`` when the segment commits."""
        if self._closed:
            raise self._error("the segment is over")
        self._watermark = self._to_db(watermark)

    # --- writing ----------------------------------------------------------------------------

    def _sorted_rows(self) -> list[_Row]:
        rows = [self._buffer[key] for key in sorted(self._buffer)]
        self._buffer.clear()
        self._buffered_bytes = 0
        return rows

    def _upsert_sqlite(self, conn: sa.Connection, version: int) -> None:
        rows = self._sorted_rows()
        sql = _UPSERT_SQLITE.format(version=int(version))
        for start in range(0, len(rows), BATCH_SIZE):
            conn.exec_driver_sql(sql, rows[start : start + BATCH_SIZE])

    def _spill_sqlite(self) -> None:
        """Move the buffer and the layers into TEMP staging tables (no lock on the database
        file): the layers count against the memory budget too, and could be most of it."""
        conn = self._conn
        rows = self._sorted_rows()
        layers = sorted(self._layers.items())
        self._layers.clear()
        conn.execution_options(sqlite_immediate=False)
        with conn.begin():
            if not self._spilled:
                conn.exec_driver_sql(_STAGE_DDL)
                conn.exec_driver_sql("DELETE FROM temp.feed_stage")
                conn.exec_driver_sql(_STAGE_LAYERS_DDL)
                conn.exec_driver_sql("DELETE FROM temp.feed_stage_layers")
                self._spilled = True
            if layers:
                conn.exec_driver_sql(_STAGE_LAYERS_UPSERT, layers)
            for start in range(0, len(rows), BATCH_SIZE):
                # the stage's columns: the row's without source_id and first_seen
                staged = [row[1:5] + row[6:] for row in rows[start : start + BATCH_SIZE]]
                conn.exec_driver_sql(_STAGE_UPSERT, staged)

    def _flush_postgres(self, version: int) -> None:
        """Upsert the buffer into ``observables`` inside the segment's transaction, new rows
        and rows whose liveness flips with ``changed_version`` ``version`` (the commit's, or
        the segment's marker)."""
        # Imported here: a SQLite poll never needs it, and it costs ~25 ms of every start.
        from sqlalchemy.dialects import postgresql

        o = observables_table
        if self._layers:
            layers = postgresql.insert(shared_contexts).on_conflict_do_nothing()
            sid = self._sid
            self._conn.execute(
                layers,
                [
                    {"source_id": sid, "digest": key, "context": text}
                    for key, text in sorted(self._layers.items())
                ],
            )
            self._layers.clear()
        rows = self._sorted_rows()
        if not rows:
            return
        self._marked = self._marked or version == self._marker
        stmt = postgresql.insert(o)
        stmt = stmt.on_conflict_do_update(
            index_elements=[o.c.source_id, o.c.digest],
            set_={
                "last_seen": sa.func.greatest(o.c.last_seen, stmt.excluded.last_seen),
                "valid_until": stmt.excluded.valid_until,
                "original_type": stmt.excluded.original_type,
                "context": stmt.excluded.context,
                "expired": stmt.excluded.expired,
                "shared_digest": stmt.excluded.shared_digest,
                "changed_version": sa.case(
                    (o.c.expired == stmt.excluded.expired, o.c.changed_version),
                    else_=stmt.excluded.changed_version,
                ),
            },
        )
        sid = self._sid
        for start in range(0, len(rows), BATCH_SIZE):
            self._conn.execute(
                stmt,
                [
                    {
                        "source_id": sid,
                        "digest": key,
                        "kind": kind,
                        "value": value,
                        "original_type": otype,
                        "first_seen": seen,
                        "last_seen": seen,
                        "valid_until": until,
                        "expired": expired,
                        "context": text,
                        "shared_digest": layer,
                        "changed_version": version,
                    }
                    for _, key, kind, value, otype, _, seen, until, expired, text, layer in rows[
                        start : start + BATCH_SIZE
                    ]
                ],
            )

    def _existing(self, keys: list[bytes]) -> dict[bytes, tuple[bool, bytes | None]]:
        """digest → (expired, shared layer's digest), for ``keys`` already stored for this
        source."""
        out: dict[bytes, tuple[bool, bytes | None]] = {}
        conn = self._conn
        if self._postgres:
            o = observables_table
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                query = sa.select(o.c.digest, o.c.expired, o.c.shared_digest).where(
                    o.c.source_id == self._sid,
                    o.c.digest.in_(keys[start : start + _LOOKUP_CHUNK]),
                )
                for key, expired, layer in conn.execute(query):
                    out[bytes(key)] = (bool(expired), None if layer is None else bytes(layer))
            return out
        conn.execution_options(sqlite_immediate=False)
        with conn.begin():
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[start : start + _LOOKUP_CHUNK]
                marks = ", ".join("?" * len(chunk))
                result = conn.exec_driver_sql(
                    "SELECT digest, expired, shared_digest FROM observables WHERE source_id = ?"
                    f" AND digest IN ({marks})",
                    (self._sid, *chunk),
                )
                for key, expired, layer in result:
                    out[bytes(key)] = (bool(expired), layer)
        return out

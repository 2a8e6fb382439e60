"""Poll what is due, once per interval, even when several gateways share one database.

A source is *due* when it is enabled and it has never been polled, or its last poll started at
least one polling interval ago, or its last poll is still marked running while the lease of the
node that ran it has expired (that node died mid-poll: the source is taken over at once instead
of an interval later, and the poller goes on from the watermark, see :mod:`.poller`).

Before polling, a node takes the source's *lease*, a row in ``leases`` naming the node and an
expiry (microseconds since the epoch, UTC, by the node's clock: nodes' clocks must agree to well
within a lease, as NTP gives). While it polls, the node renews the lease every third of its
length, so a lease can be short (a dead node's sources are taken over within a lease) and a poll
still as long as it needs. A node that dies stops renewing; its lease expires and another node
takes the source over from its watermark, losing nothing (segments are transactions) and
doubling nothing (upserts). After the poll the node releases the lease.

Two ways to take a lease, one per backend, both giving "each due source is polled by exactly one
node":

* PostgreSQL (design.md "Storage": the cluster's shared database): every source has a lease row
  (``INSERT ... ON CONFLICT DO NOTHING``; a released lease is kept as a free row, node ``''``),
  and a node takes the next due source in one transaction:
  ``SELECT ... FOR UPDATE OF leases SKIP LOCKED LIMIT 1`` over the due sources whose lease is free
  or expired, then marks the row with its name and expiry. SKIP LOCKED means nodes never wait on
  each other: each one skips the rows others are taking right now and takes the next. Under READ
  COMMITTED the row's lease columns are checked again on its newest version once it is locked;
  the source's status is read again in a fresh statement under the lock, so a poll that another
  node started and finished after our query began is seen and the source is left alone.
* SQLite (one writer at a time, ``BEGIN IMMEDIATE`` serialises writers): one conditional write,
  update the row if its lease has expired (or is ours), or insert it if absent; a released lease
  is deleted. After taking it the node checks that the source's last start has not moved
  meanwhile.

A node takes one source at a time, polls it, releases it and takes the next, so several nodes
share a pass between them.

Poll Now (``feedgate poll``, ``POST /api/v1/sources/{name}/poll``, the first poll of ``feedgate
up``) takes the same lease through :meth:`Scheduler.poll_now` (or :meth:`Scheduler.leased`), as
a node of its own (a fresh :func:`node_name`, so not even the scheduler of the same process
shares it): it renews it while it polls and releases it after, and when another node holds the
lease it does not poll but raises :class:`LeaseHeld`, which names that node and when its lease
ends. A Poll Now whose process dies leaves a lease that expires like any node's, and is taken
over the same way.

Except on the same host: a lease whose node is a process of this host that has ended (``kill
-9``, a crash; see :mod:`.nodes`, which also says what cannot be told) is taken over by
:meth:`Scheduler.claim` at once, without waiting for it to expire, so Poll Now right after a
killed Poll Now polls (from the watermark) instead of failing for two minutes. The take-over is
one conditional write naming the dead node, so of two nodes taking it at once only one gets it.
The scheduler's own pass still finds such a source due only when its lease expires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from feedgate.db import read_transaction, write_transaction

from .log import ThreatFeedLog
from .nodes import ended_here, node_name
from .poller import PollResult, poll_source
from .schema import leases, sources, status_table
from .sources import Source
from .store import FeedStore, FeedStoreError, SourceStatus

log = logging.getLogger("feedgate.feeds.scheduler")

#: The node name of a lease row nobody holds (PostgreSQL keeps released rows for SKIP LOCKED).
FREE: Final = ""
#: How long a lease lasts without renewal; renewed every third of it while a poll runs.
DEFAULT_LEASE: Final = timedelta(minutes=2)


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def next_poll(source: Source, last_start: datetime | None, now: datetime) -> datetime | None:
    """When the scheduler finds ``source`` due by its interval (the rule of :meth:`Scheduler.due`):
    ``now`` when it has never been polled or an interval has passed since its last poll's
    start, else that start plus the interval; None when it is disabled (only Poll Now polls it)
    or the interval reaches past the calendar. (A poll a dead node left running is taken over
    sooner, when its lease ends: see the module doc.)"""
    if not source.enabled:
        return None
    if last_start is None or now - last_start >= source.polling_interval:
        return now
    try:
        return last_start + source.polling_interval
    except OverflowError:
        return None


@dataclass(frozen=True)
class Holder:
    """Who holds a source's lease, until when, and since when its poll runs (when known)."""

    node: str
    expires: datetime
    since: datetime | None = None


class LeaseHeld(Exception):
    """Another node holds the lease of ``source`` (Poll Now refused; nothing was polled).
    ``holder`` is that node, or None when it let go before it could be read."""

    def __init__(self, source: str, holder: Holder | None) -> None:
        self.source = source
        self.holder = holder
        who = f"node {holder.node}" if holder is not None else "another node"
        since = holder.since if holder is not None else None
        when = f" since {since.astimezone(UTC):%H:%M:%S}Z" if since is not None else ""
        ends = (
            f" (its lease ends {holder.expires.astimezone(UTC):%H:%M:%S}Z unless it renews it"
            " while it polls)"
            if holder is not None
            else ""
        )
        super().__init__(
            f'source "{source}" is being polled by {who}{when}{ends}; try again when it finishes'
        )


class Scheduler:
    """Runs due polls for one node."""

    def __init__(
        self,
        store: FeedStore,
        feed_log: ThreatFeedLog,
        *,
        node: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll: Callable[..., PollResult] = poll_source,
    ) -> None:
        self.store = store
        self.feed_log = feed_log
        self.node = node or node_name()
        if lease <= timedelta(0):
            raise ValueError("a lease must last more than zero seconds")
        self.lease = lease
        self.now = now
        self._poll = poll
        self._stopping: threading.Event | None = None  # run_forever's: set when the node stops
        self._postgres = store.engine.dialect.name == "postgresql"
        # The leases table is the feeds schema's: FeedStore's migrations made it.

    # --- what is due --------------------------------------------------------------------------

    def due(self) -> list[Source]:
        """Enabled sources that are due (see the module doc), by name."""
        return [source for source, _ in self._due_starts()]

    def _due_starts(self) -> list[tuple[Source, datetime | None]]:
        """The due sources, each with the last start that made it due."""
        now = self.now()
        now_us = _micros(now)
        with read_transaction(self.store.engine) as conn:
            held = {row.source: row for row in conn.execute(sa.select(leases))}
        out = []
        for source in self.store.list_sources():
            if not source.enabled:
                continue
            status = self.store.status(source.name)
            last = status.last_start
            lease = held.get(source.name)
            abandoned = (
                status.result == "running"
                and lease is not None
                and lease.node != FREE
                and lease.expires < now_us
            )
            # now - last, not last + interval: a difference cannot overflow, so a source stored
            # with an absurd interval (before validate() bounded it) does not stop every pass
            if last is None or now - last >= source.polling_interval or abandoned:
                out.append((source, last))
        return out

    # --- leases -------------------------------------------------------------------------------

    def _expires(self) -> int:
        return _micros(self.now()) + int(self.lease.total_seconds() * 1_000_000)

    def claim(self, name: str) -> bool:
        """Take ``name``'s lease for this node; False if another node holds it (a node of this
        host whose process has ended holds nothing: see the module doc)."""
        claimed = self._claim_postgres(name) if self._postgres else self._claim_sqlite(name)
        return claimed or self._take_over_ended(name)

    def _take_over_ended(self, name: str) -> bool:
        """Take ``name``'s lease from a node of this host whose process has ended."""
        with read_transaction(self.store.engine) as conn:
            held = conn.execute(sa.select(leases.c.node).where(leases.c.source == name)).first()
        if held is None or held.node in (FREE, self.node) or not ended_here(held.node):
            return False
        with write_transaction(self.store.engine) as conn:
            taken = conn.execute(
                leases.update()
                .where(leases.c.source == name, leases.c.node == held.node)
                .values(node=self.node, expires=self._expires())
            ).rowcount
        if taken:
            log.info(
                "took source %s's lease from node %s, whose process has ended", name, held.node
            )
        return bool(taken)

    def _claim_sqlite(self, name: str) -> bool:
        now = _micros(self.now())
        expires = self._expires()
        with write_transaction(self.store.engine) as conn:
            taken = conn.execute(
                leases.update()
                .where(leases.c.source == name, self._claimable(now))
                .values(node=self.node, expires=expires)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(sa.select(leases.c.source).where(leases.c.source == name)).first()
            if exists is not None:
                return False
            try:
                with conn.begin_nested():
                    conn.execute(
                        leases.insert().values(source=name, node=self.node, expires=expires)
                    )
            except sa.exc.IntegrityError:
                return False  # another node inserted it first
            return True

    def _ensure_rows(self, names: Collection[str] | None = None) -> None:
        """PostgreSQL: a lease row for ``names`` (or every source), so SKIP LOCKED has a row to
        lock. Its own short transaction: ON CONFLICT DO NOTHING does not wait on rows that
        other nodes hold locked."""
        stmt: postgresql.Insert
        if names is None:
            stmt = postgresql.insert(leases).from_select(
                ["source", "node", "expires"],
                sa.select(sources.c.name, sa.literal(FREE), sa.literal(0, sa.BigInteger)),
            )
        else:
            stmt = postgresql.insert(leases).values(
                [{"source": n, "node": FREE, "expires": 0} for n in names]
            )
        with self.store.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing())

    def _claimable(self, now_us: int) -> sa.ColumnElement[bool]:
        """A lease row this node may take: free, expired, or already its own."""
        return sa.or_(leases.c.expires < now_us, leases.c.node == self.node)

    def _claim_postgres(self, name: str) -> bool:
        self._ensure_rows([name])
        now_us = _micros(self.now())
        with self.store.engine.begin() as conn:
            row = conn.execute(
                sa.select(leases.c.source)
                .where(leases.c.source == name, self._claimable(now_us))
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return False
            conn.execute(
                leases.update()
                .where(leases.c.source == name)
                .values(node=self.node, expires=self._expires())
            )
            return True

    def claim_next(self, exclude: Collection[str] = ()) -> Source | None:
        """Take the lease of one due source (not in ``exclude``) and return it; None when no
        due source is left for this node. The caller polls it, then :meth:`release` s it."""
        if self._postgres:
            return self._claim_next_postgres(exclude)
        for source, seen_start in self._due_starts():
            if source.name in exclude or not self.claim(source.name):
                continue
            # Not polled meanwhile (another node may have taken, polled and released it since
            # we read its status):
            if self.store.status(source.name).last_start == seen_start:
                return source
            self.release(source.name)
        return None

    def _claim_next_postgres(self, exclude: Collection[str]) -> Source | None:
        self._ensure_rows()
        now = self.now()
        now_us = _micros(now)
        naive_now = _naive_utc(now)
        st, s = status_table, sources
        microsecond = sa.literal_column("interval '1 microsecond'", sa.Interval)
        interval = microsecond.op("*", return_type=sa.Interval)(s.c.polling_interval_us)
        due = sa.or_(
            st.c.last_start.is_(None),
            st.c.last_start + interval <= naive_now,
            sa.and_(st.c.result == "running", leases.c.node != FREE, leases.c.expires < now_us),
        )
        query = (
            sa.select(leases.c.source, st.c.last_start)
            .select_from(
                leases.join(s, s.c.name == leases.c.source).outerjoin(st, st.c.source_id == s.c.id)
            )
            .where(s.c.enabled.is_(True), self._claimable(now_us), due)
            .order_by(st.c.last_start.asc().nulls_first(), leases.c.source)
            .limit(1)
            .with_for_update(of=leases, skip_locked=True)
        )
        if exclude:
            query = query.where(leases.c.source.not_in(list(exclude)))
        for _ in range(100):  # each turn is a source polled meanwhile: a bound, not a limit
            with self.store.engine.begin() as conn:
                row = conn.execute(query).first()
                if row is None:
                    return None
                name, seen_start = row.source, row.last_start
                # A fresh statement sees what committed since the query's snapshot: if a poll
                # started meanwhile (another node took, polled and released it), leave it.
                fresh = conn.execute(
                    sa.select(st.c.last_start)
                    .select_from(st.join(s, s.c.id == st.c.source_id))
                    .where(s.c.name == name)
                ).first()
                if (None if fresh is None else fresh.last_start) != seen_start:
                    continue
                conn.execute(
                    leases.update()
                    .where(leases.c.source == name)
                    .values(node=self.node, expires=self._expires())
                )
            source = self.store.get_source(name)
            if source is not None:
                return source
            self.release(name)  # deleted meanwhile
            query = query.where(leases.c.source != name)
        return None

    def renew(self, name: str) -> bool:
        """Push the expiry of this node's lease on ``name`` one lease ahead; False if this node
        does not hold it any more."""
        with write_transaction(self.store.engine) as conn:
            done = conn.execute(
                leases.update()
                .where(leases.c.source == name, leases.c.node == self.node)
                .values(expires=self._expires())
            )
            return bool(done.rowcount)

    def release(self, name: str) -> None:
        """Give ``name``'s lease up (if this node holds it)."""
        mine = sa.and_(leases.c.source == name, leases.c.node == self.node)
        with write_transaction(self.store.engine) as conn:
            if self._postgres:
                conn.execute(leases.update().where(mine).values(node=FREE, expires=0))
            else:
                conn.execute(leases.delete().where(mine))

    def holder(self, name: str) -> Holder | None:
        """The node that holds ``name``'s lease now (taken and not expired), or None. Its poll's
        start is ``since`` when the source's status says it is running."""
        with read_transaction(self.store.engine) as conn:
            row = conn.execute(sa.select(leases).where(leases.c.source == name)).first()
        if row is None or row.node == FREE or row.expires < _micros(self.now()):
            return None
        try:
            status = self.store.status(name)
        except FeedStoreError:  # deleted meanwhile
            status = SourceStatus()
        since = status.last_start if status.result == "running" else None
        expires = datetime.fromtimestamp(row.expires / 1_000_000, UTC)
        return Holder(node=row.node, expires=expires, since=since)

    @contextmanager
    def holding(self, name: str) -> Iterator[threading.Event]:
        """Keep this node's lease on ``name`` renewed for the block, then release it. The event
        given to the block is set if the lease is lost (another node took the source over):
        the poll must then stop, or two nodes would poll one source at once."""
        stop = threading.Event()
        lost = threading.Event()

        def renew() -> None:
            every = self.lease.total_seconds() / 3
            while not stop.wait(every):
                try:
                    if not self.renew(name):
                        log.warning("lease of source %s was lost (taken over?)", name)
                        lost.set()
                        return
                except Exception:  # the database may come back before the lease runs out
                    log.exception("renewing the lease of source %s failed", name)

        thread = threading.Thread(target=renew, name=f"lease {name}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()
            try:
                self.release(name)
            except Exception:  # the lease runs out by itself; what the block raised matters more
                log.exception("releasing the lease of source %s failed; it expires anyway", name)

    @contextmanager
    def leased(self, name: str, attempts: int = 5) -> Iterator[threading.Event]:
        """Take ``name``'s lease whether or not the source is due, keep it renewed for the block
        (:meth:`holding`), release it after: what Poll Now runs in. :class:`LeaseHeld` if
        another node holds it. A failed claim whose holder has let go already (or, on
        PostgreSQL, whose row another node is locking this instant) is tried again a few
        times, briefly."""
        for attempt in range(attempts):
            if self.claim(name):
                break
            holder = self.holder(name)
            if holder is not None:
                raise LeaseHeld(name, holder)
            threading.Event().wait(0.05 * (attempt + 1))
        else:
            raise LeaseHeld(name, self.holder(name))
        with self.holding(name) as lost:
            yield lost

    def _poll_under(self, source: Source, lost: threading.Event) -> PollResult:
        """Poll ``source``, stopping between segments if the lease is ``lost``."""

        stopping = self._stopping

        def cancelled() -> str | None:
            if lost.is_set():
                return "this node lost the source's lease (another node has taken it over)"
            if stopping is not None and stopping.is_set():
                return "this node is stopping"
            return None

        if stopping is None:
            return self._poll(self.store, source, self.feed_log, cancelled=cancelled)

        def sleep(seconds: float) -> None:  # a retry's backoff ends when the node stops
            stopping.wait(seconds)

        return self._poll(self.store, source, self.feed_log, cancelled=cancelled, sleep=sleep)

    def poll_now(self, source: Source) -> PollResult:
        """Poll Now: poll ``source`` under its lease (:meth:`leased`), due or not; the result.
        :class:`LeaseHeld`, and no poll, if another node holds the lease."""
        with self.leased(source.name) as lost:
            return self._poll_under(source, lost)

    # --- running ------------------------------------------------------------------------------

    def run_once(self) -> list[PollResult]:
        """Poll every due source whose lease this node gets, one at a time; the results."""
        results = []
        done: set[str] = set()
        while (source := self.claim_next(done)) is not None:
            done.add(source.name)
            with self.holding(source.name) as lost:
                results.append(self._poll_under(source, lost))
        return results

    def run_forever(self, stop: threading.Event, tick: float = 10.0) -> None:
        """Check for due sources every ``tick`` seconds until ``stop`` is set; a poll in
        progress then stops at its next segment or retry (what it committed stays)."""
        self._stopping = stop
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # a broken source must not stop the schedule
                log.exception("scheduler pass failed")
            stop.wait(tick)

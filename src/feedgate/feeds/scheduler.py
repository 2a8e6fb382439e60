"""Poll what is due, once per interval, even when several gateways share one database.

A source is due when it has never been polled or its last poll started at least one polling
interval ago. Before polling, a node takes the source's lease: a row in the database that names
the node and an expiry. Taking it is one conditional write (insert if absent, or update if the
lease has expired), so when several nodes find the same source due at once exactly one of them
polls it; a node that dies mid-poll lets its lease run out and another node takes over from the
source's watermark, losing nothing (segments are transactions). On PostgreSQL the same
statements are atomic row by row; a ``FOR UPDATE SKIP LOCKED`` variant is a refinement for
large clusters, not a requirement for correctness.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import sqlalchemy as sa

from .log import ThreatFeedLog
from .poller import PollResult, poll_source
from .sources import Source
from .store import FeedStore

log = logging.getLogger("feedgate.feeds.scheduler")

_metadata = sa.MetaData()
#: Who is polling which source, until when (microseconds since the epoch, UTC).
leases = sa.Table(
    "leases",
    _metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("expires", sa.BigInteger, nullable=False),
)

#: How long a lease lasts; a poll longer than this renews nothing, so keep it generous.
DEFAULT_LEASE: Final = timedelta(minutes=30)


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def node_name() -> str:
    """This process, as leases name it: host, pid and a random part."""
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


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
        self.lease = lease
        self.now = now
        self._poll = poll
        # The leases table is the feeds schema's: FeedStore's migrations made it.

    def due(self) -> list[Source]:
        """Enabled sources whose interval has passed since their last poll started."""
        now = self.now()
        out = []
        for source in self.store.list_sources():
            if not source.enabled:
                continue
            last = self.store.status(source.name).last_start
            if last is None or last + source.polling_interval <= now:
                out.append(source)
        return out

    def claim(self, name: str) -> bool:
        """Take ``name``'s lease for this node; False if another node holds it."""
        now = _micros(self.now())
        expires = now + int(self.lease.total_seconds() * 1_000_000)
        with self.store.engine.connect() as conn:
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                taken = conn.execute(
                    leases.update()
                    .where(leases.c.source == name)
                    .where(sa.or_(leases.c.expires < now, leases.c.node == self.node))
                    .values(node=self.node, expires=expires)
                ).rowcount
                if taken:
                    return True
                exists = conn.execute(
                    sa.select(leases.c.source).where(leases.c.source == name)
                ).first()
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

    def release(self, name: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(
                leases.delete().where(leases.c.source == name).where(leases.c.node == self.node)
            )

    def run_once(self) -> list[PollResult]:
        """Poll every due source whose lease this node gets; the results."""
        results = []
        for source in self.due():
            if not self.claim(source.name):
                continue
            try:
                if source.name in {s.name for s in self.due()}:  # not polled meanwhile
                    results.append(self._poll(self.store, source, self.feed_log))
            finally:
                self.release(source.name)
        return results

    def run_forever(self, stop: threading.Event, tick: float = 10.0) -> None:
        """Check for due sources every ``tick`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # a broken source must not stop the schedule
                log.exception("scheduler pass failed")
            stop.wait(tick)

"""The history of how many observables each source held, per kind: what the Reports page
charts over time (issue 14), which the observables table cannot give (an expired row keeps no
time of expiry, and a deleted row is gone).

A snapshot is written at the end of every poll (:func:`feedgate.feeds.poller.poll_source`, the
one function ``feedgate poll``, the scheduler and Poll Now all run), after the poll's expiry:
one row per kind the source holds live. It is kept small and bounded: one snapshot per source
and UTC day (a poll replaces that day's earlier one, so a day's row is its last count, the one
the chart draws), and rows older than :data:`KEEP` are deleted as new ones are written. A
source's rows go with it (``ON DELETE CASCADE``): what a deleted source held is no longer
held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Final

import sqlalchemy as sa

from feedgate.db import read_transaction, write_transaction

from .schema import held_counts, observables_table, sources

__all__ = ["KEEP", "HeldCount", "UnknownSource", "history", "record"]

#: How long snapshots are kept: a little over a year, so a year's chart is whole.
KEEP: Final = timedelta(days=400)


@dataclass(frozen=True, slots=True)
class HeldCount:
    """Source ``source`` held ``held`` live observables of ``kind`` at ``at`` (aware UTC)."""

    source: str
    kind: str
    at: datetime
    held: int


def _naive(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


class UnknownSource(LookupError):
    """No source has that name (it was deleted while it was being polled)."""


def record(engine: sa.Engine, name: str, at: datetime) -> dict[str, int]:
    """Write source ``name``'s live observables per kind as its snapshot at ``at``, replacing
    the same UTC day's earlier one, and delete snapshots older than :data:`KEEP`; the counts.

    Counted in a read transaction before the write one, so SQLite's writer lock is held only
    for a few small statements: the poller holds the source's lease, so no other poll of it
    changes the counts in between."""
    o = observables_table
    moment = _naive(at)
    with read_transaction(engine) as conn:
        sid = conn.execute(sa.select(sources.c.id).where(sources.c.name == name)).scalar()
        if sid is None:
            raise UnknownSource(f"no source named {name}")
        query = (
            sa.select(o.c.kind, sa.func.count())
            .where(o.c.source_id == sid, o.c.expired.is_(False))
            .group_by(o.c.kind)
        )
        counts = {str(kind): int(n) for kind, n in conn.execute(query)}
    day = datetime.combine(moment.date(), time())
    h = held_counts
    with write_transaction(engine) as conn:
        conn.execute(
            h.delete().where(h.c.source_id == sid, h.c.at >= day, h.c.at < day + timedelta(days=1))
        )
        if counts:
            conn.execute(
                h.insert(),
                [
                    {"source_id": sid, "at": moment, "kind": kind, "held": n}
                    for kind, n in sorted(counts.items())
                ],
            )
        conn.execute(h.delete().where(h.c.at < moment - KEEP))
    return counts


def history(engine: sa.Engine, since: datetime | None = None) -> list[HeldCount]:
    """The snapshots from ``since`` (None: all kept) on, by source name, time and kind."""
    h = held_counts
    query = (
        sa.select(sources.c.name, h.c.kind, h.c.at, h.c.held)
        .select_from(h.join(sources, sources.c.id == h.c.source_id))
        .order_by(sources.c.name, h.c.at, h.c.kind)
    )
    if since is not None:
        query = query.where(h.c.at >= _naive(since))
    with read_transaction(engine) as conn:
        return [
            HeldCount(str(name), str(kind), at.replace(tzinfo=UTC), int(n))
            for name, kind, at, n in conn.execute(query)
        ]

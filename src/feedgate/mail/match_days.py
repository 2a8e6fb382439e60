"""The match log counted per day: what the console's Reports chart (messages matched per source
per day, messages per action per day).

It reads the same rows as :meth:`feedgate.mail.policy_store.PolicyStore.hits` (the match log:
one row per observable matched in a message) with the same counts: ``hits`` are rows,
``messages`` distinct message ids; only grouped by the UTC day of the row's time as well. A
day's rows summed over the days are the window's hits per source and mode, as ``hits()`` counts
them. Days come from the data and the caller's window (:func:`days`), never from a fixed date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from feedgate.db import naive_utc, read_transaction

from .schema import match_log

__all__ = ["ActionDay", "MatchDays", "SourceDay", "days", "match_days"]


@dataclass(frozen=True, slots=True)
class SourceDay:
    """One source's matches in one mode on one UTC day."""

    day: date
    source: str
    mode: str
    hits: int  # log rows: one per observable per message
    messages: int  # distinct message ids among them


@dataclass(frozen=True, slots=True)
class ActionDay:
    """The messages logged with one action (what was done, or for mode monitor what would
    have been; the retro-scan's rows say ``retro``/``retro-monitor``) on one UTC day."""

    day: date
    action: str
    mode: str
    messages: int
    hits: int


@dataclass(frozen=True, slots=True)
class MatchDays:
    """Both counts of a window, days ascending."""

    sources: tuple[SourceDay, ...]
    actions: tuple[ActionDay, ...]


def _day(value: Any) -> date:
    """The ``date()`` of a row: a date (PostgreSQL) or its ISO text (SQLite)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def match_days(engine: sa.Engine, since: datetime | None = None) -> MatchDays:
    """The match log from ``since`` on (None: all of it) counted per UTC day: per source and
    mode, and per action and mode. The log keeps naive UTC times, so SQL's ``date()`` is the
    UTC day on SQLite and PostgreSQL alike."""
    m = match_log
    day = sa.func.date(m.c.at).label("day")
    where = [] if since is None else [m.c.at >= naive_utc(since)]
    hits, messages = sa.func.count(), sa.func.count(sa.distinct(m.c.message_id))
    per_source = (
        sa.select(day, m.c.source, m.c.mode, hits, messages)
        .where(*where)
        .group_by(day, m.c.source, m.c.mode)
        .order_by(day, m.c.source, m.c.mode)
    )
    per_action = (
        sa.select(day, m.c.action, m.c.mode, messages, hits)
        .where(*where)
        .group_by(day, m.c.action, m.c.mode)
        .order_by(day, m.c.action, m.c.mode)
    )
    with read_transaction(engine) as conn:
        sources = tuple(
            SourceDay(_day(d), str(s), str(mode), int(n), int(msgs))
            for d, s, mode, n, msgs in conn.execute(per_source)
        )
        actions = tuple(
            ActionDay(_day(d), str(a), str(mode), int(msgs), int(n))
            for d, a, mode, msgs, n in conn.execute(per_action)
        )
    return MatchDays(sources, actions)


def days(now: datetime, since: datetime | None, found: MatchDays) -> list[date]:
    """The UTC days a chart of ``found`` shows, ascending: every day from ``since`` (None:
    the first day the data has, or today) to ``now``'s, each whether or not it has rows."""
    last = now.astimezone(UTC).date()
    seen = {d.day for d in found.sources} | {d.day for d in found.actions}
    first = since.astimezone(UTC).date() if since is not None else min(seen, default=last)
    first = min(first, min(seen, default=first), last)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]

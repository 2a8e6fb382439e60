"""The retro-scan: when a poll adds observables, the messages already delivered that they would
have caught.

:class:`RetroScanner` follows the store's version as a matcher does: it reads the observables
made live since the version it has matched up to (:func:`feedgate.feeds.enforced.changes_since`),
looks their digest keys (and, for networks, their address ranges) up in the mail index
(:mod:`feedgate.mail.mailindex`), and for each indexed message found decides again with the
*current* policy (exceptions, the false-positive gate, enabled sources and enforced kinds,
monitor mode) on the new matches alone. A message is reported when the rules would now do
more to it than was done (``quarantine`` where it was delivered, say; ``log`` is not more):

- a row in ``mail_retro`` (``feedgate retro``, ``GET /api/v1/retro``), one per message and
  observable, ever;
- a row in the match log with action :data:`RETRO_ACTION` (or :data:`RETRO_MONITOR_ACTION` and
  mode ``monitor`` for a source in monitor mode: what it *would have* caught), so ``feedgate
  hits`` counts them too, each mode apart;
- a ``retro`` line in the threat-feed log, one per message and source.

The version matched up to is ``feed_counters.retro_version``, moved in the transaction that
writes the findings (compare-and-set: of several nodes one wins, the others find nothing new),
so a restart neither rescans nor misses a poll. Its first value is the lowest version a message
in the index was scanned at (everything older was looked for when the message was scanned).
``feeds`` knows nothing of this: ``feedgate serve`` runs it beside the scheduler.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import sqlalchemy as sa

from feedgate.db import naive_utc, read_transaction, write_transaction
from feedgate.feeds.enforced import KIND_CODES, Rows, changes_since, digest_key
from feedgate.feeds.enforced import observables_by_ids as _by_ids
from feedgate.feeds.store import FeedStore

from .mailindex import IndexedMessage, MailIndex
from .matcher import Snapshot
from .model import ACTION_SEVERITY, PARTS, Action, Inspection, Match
from .policy import Policy, Verdict, evaluate
from .policy_store import PolicyStore
from .schema import RETRO_COUNTER, match_log, retro_table

if TYPE_CHECKING:
    from feedgate.feeds.log import ThreatFeedLog

__all__ = [
    "RETRO_ACTION",
    "RETRO_MONITOR_ACTION",
    "RetroFind",
    "RetroScanner",
    "caught",
    "retro_finds",
]

#: The match log's action for a message the retro-scan found (nothing was done to it then).
RETRO_ACTION: Final = "retro"
#: ... and for one a monitor-mode source's observable would have caught.
RETRO_MONITOR_ACTION: Final = "retro-monitor"
_CIDR: Final = KIND_CODES["cidr"]
_LOG = logging.getLogger("feedgate.mail.retro")

_counters = sa.table(
    "feed_counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger)
)


def caught(now: Action, then: Action) -> bool:
    """Whether ``now`` (the rules' action today) catches a message that got ``then``: more
    severe, and more than logging it."""
    return ACTION_SEVERITY[now] > max(ACTION_SEVERITY[then], ACTION_SEVERITY[Action.LOG])


@dataclass(frozen=True, slots=True)
class RetroFind:
    """A delivered message that an observable added later would have caught."""

    id: int
    at: datetime  # when the retro-scan found it
    scanned_at: datetime  # when the message passed
    name: str | None
    message_id: str | None
    envelope_from: str | None
    subject: str | None
    client_ip: str | None
    passed: str  # what was done then: deliver, log, tag, header
    action: str  # what the rules would do now
    rule: str | None
    mode: str  # the source's: enforce, or monitor (would have)
    part: str
    kind: str
    value: str
    source: str
    observable_id: int
    indexed: int  # the message's row in the mail index (gone once it expired)

    def to_dict(self) -> dict[str, Any]:
        """One row of ``feedgate retro --format jsonl`` and ``GET /api/v1/retro``."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "scanned_at": self.scanned_at.isoformat(),
            "name": self.name,
            "message_id": self.message_id,
            "envelope_from": self.envelope_from,
            "subject": self.subject,
            "client_ip": self.client_ip,
            "passed": self.passed,
            "action": self.action,
            "rule": self.rule,
            "mode": self.mode,
            "part": self.part,
            "kind": self.kind,
            "value": self.value,
            "source": self.source,
        }


def _find(row: Any) -> RetroFind:
    return RetroFind(
        id=int(row.id),
        at=row.at.replace(tzinfo=UTC),
        scanned_at=row.scanned_at.replace(tzinfo=UTC),
        name=row.name,
        message_id=row.message_id,
        envelope_from=row.envelope_from,
        subject=row.subject,
        client_ip=row.client_ip,
        passed=row.passed,
        action=row.action,
        rule=row.rule,
        mode=row.mode,
        part=row.part,
        kind=row.kind,
        value=row.value,
        source=row.source,
        observable_id=int(row.observable_id),
        indexed=int(row.indexed),
    )


def retro_finds(
    engine: sa.Engine,
    *,
    since: datetime | None = None,
    source: str | None = None,
    limit: int | None = None,
) -> list[RetroFind]:
    """The retro-scan's findings from ``since`` on (None: all), of one source or all, newest
    last: what ``feedgate retro`` and ``GET /api/v1/retro`` list."""
    r = retro_table
    query = sa.select(r)
    if since is not None:
        query = query.where(r.c.at >= naive_utc(since))
    if source is not None:
        query = query.where(r.c.source == source)
    query = query.order_by(r.c.at, r.c.id)
    if limit is not None:
        query = query.limit(max(0, int(limit)))
    with read_transaction(engine) as conn:
        return [_find(row) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class _Found:
    message: IndexedMessage
    verdict: Verdict  # the verdict whose matches are reported
    mode: str


def _keys(changes: Rows) -> tuple[list[int], list[tuple[int, int, int]]]:
    """The index keys of the live changed rows (e-mail addresses lower-cased, as the index
    keys them) and their networks."""
    live = changes.live & (changes.kinds != _CIDR)
    keys = changes.keys.copy()
    if changes.emails:
        position = {int(row_id): i for i, row_id in enumerate(changes.ids)}
        for row_id, value in changes.emails:
            keys[position[row_id]] = np.uint64(digest_key("email", value.lower()))
    networks = [(n.family, n.first, n.last) for n in changes.networks]
    return [int(k) for k in keys[live]], networks


class RetroScanner:
    """Matches each poll's new observables against the mail index (module doc).

    ``now`` is the clock findings are dated with and the retention counts back from;
    ``feed_log`` the threat-feed log its lines go to (None: the store's log table only).
    """

    def __init__(
        self,
        store: FeedStore,
        policy: PolicyStore,
        index: MailIndex,
        *,
        feed_log: ThreatFeedLog | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.policy = policy
        self.index = index
        self.feed_log = feed_log
        self._now = now
        self._lock = threading.Lock()

    # --- the version matched up to --------------------------------------------------------

    def version(self) -> int | None:
        """The store version matched up to (None: never run)."""
        with read_transaction(self.store.engine) as conn:
            value = conn.execute(
                sa.select(_counters.c.value).where(_counters.c.name == RETRO_COUNTER)
            ).scalar()
        return None if value is None else int(value)

    def _start(self) -> int:
        done = self.version()
        if done is not None:
            return done
        oldest = self.index.oldest_version()
        return self.store.version() if oldest is None else oldest

    @staticmethod
    def _advance(conn: sa.Connection, start: int, done: int | None, to: int) -> bool:
        """Move the counter from ``start`` to ``to`` in ``conn``'s transaction; False when
        another node moved it first."""
        if done is None:
            there = conn.execute(
                sa.select(_counters.c.value).where(_counters.c.name == RETRO_COUNTER)
            ).first()
            if there is not None:
                return False
            conn.execute(_counters.insert().values(name=RETRO_COUNTER, value=to))
            return True
        moved = conn.execute(
            _counters.update()
            .where(_counters.c.name == RETRO_COUNTER, _counters.c.value == start)
            .values(value=to)
        )
        return bool(moved.rowcount)

    # --- one run ----------------------------------------------------------------------------

    def run_once(self) -> list[RetroFind]:
        """Expire the index, match what changed since the last run, record and log what it
        finds; the new findings (none when nothing changed or another node was first)."""
        with self._lock:
            now = self._now()
            self.index.expire(now)
            done = self.version()
            start = self._start() if done is None else done
            if self.store.version() == start and done is not None:
                return []
            changes = changes_since(self.store, start)
            found = self._match(changes, now)
            return self._record(found, start, done, changes.version, now)

    def _match(self, changes: Rows, now: datetime) -> list[_Found]:
        keys, networks = _keys(changes)
        if not keys and not networks:
            return []
        candidates = self.index.candidates(
            keys, networks, since=now - self.index.retention, before_version=changes.version
        )
        if not candidates:
            return []
        snapshot = Snapshot.of_rows(changes, lambda ids: _by_ids(self.store, ids))
        policy = self.policy.load()
        gates, modes = self.store.fp_gates(), self.store.source_modes()
        found: list[_Found] = []
        for message in candidates:
            matches = snapshot.match(message.offers)
            if matches:
                found.extend(self._judge(message, matches, policy, gates, modes))
        return found

    @staticmethod
    def _judge(
        message: IndexedMessage,
        matches: Sequence[Match],
        policy: Policy,
        gates: Mapping[str, bool],
        modes: Mapping[str, str],
    ) -> list[_Found]:
        inspection = Inspection(message.offers, message_id=message.message_id)
        out = []
        verdict = evaluate(matches, inspection, policy, fp_gates=gates, modes=modes)
        if verdict.matches and caught(verdict.action, message.action):
            out.append(_Found(message, verdict, "enforce"))
        if verdict.monitored:  # what those sources would have done, were they enforced
            would = evaluate(verdict.monitored, inspection, policy, fp_gates=gates)
            if caught(would.action, message.action):
                out.append(_Found(message, would, "monitor"))
        return out

    @staticmethod
    def _rows(found: _Found, at: datetime) -> list[dict[str, Any]]:
        """One row a (message, observable): the parts it was in joined, the deciding rule."""
        message, verdict = found.message, found.verdict
        rows: dict[int, dict[str, Any]] = {}
        for match, applied in zip(verdict.matches, verdict.match_rules, strict=True):
            row = rows.get(match.observable_id)
            if row is None:
                row = rows[match.observable_id] = {
                    "at": at,
                    "indexed": message.id,
                    "scanned_at": naive_utc(message.at),
                    "name": message.name,
                    "message_id": message.message_id,
                    "envelope_from": message.envelope_from,
                    "subject": message.subject,
                    "client_ip": message.client_ip,
                    "passed": str(message.action),
                    "action": str(verdict.action),
                    "rule": applied[0] if applied else None,
                    "mode": found.mode,
                    "part": set(),
                    "observable_id": match.observable_id,
                    "kind": match.kind,
                    "value": match.value,
                    "source": match.source,
                }
            row["part"].add(match.part)
        for row in rows.values():
            row["part"] = ",".join(str(p) for p in PARTS if p in row["part"])
        return list(rows.values())

    def _record(
        self, found: Iterable[_Found], start: int, done: int | None, to: int, now: datetime
    ) -> list[RetroFind]:
        at = naive_utc(now)
        rows = [row for f in found for row in self._rows(f, at)]
        r = retro_table
        written: list[Any] = []
        with write_transaction(self.store.engine) as conn:
            if not self._advance(conn, start, done, to):
                return []  # another node was first: nothing written here
            messages = sorted({row["indexed"] for row in rows})
            seen: set[tuple[int, int]] = set()  # reported once: earlier runs' findings stay
            for chunk in _chunks(messages):
                query = sa.select(r.c.indexed, r.c.observable_id).where(r.c.indexed.in_(chunk))
                seen.update((int(i), int(o)) for i, o in conn.execute(query))
            rows = [x for x in rows if (x["indexed"], x["observable_id"]) not in seen]
            if rows:
                conn.execute(r.insert(), rows)
                conn.execute(match_log.insert(), [self._log_row(row) for row in rows])
                for chunk in _chunks(messages):
                    written.extend(conn.execute(sa.select(r).where(r.c.indexed.in_(chunk))))
        wanted = {(x["indexed"], x["observable_id"]) for x in rows}
        finds = [
            _find(row) for row in written if (int(row.indexed), int(row.observable_id)) in wanted
        ]
        finds.sort(key=lambda f: f.id)
        self._tell(finds)
        return finds

    @staticmethod
    def _log_row(row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "at": row["at"],
            "message_id": row["message_id"] or row["name"],
            "parts": row["part"],
            "rule": row["rule"],
            "action": RETRO_ACTION if row["mode"] == "enforce" else RETRO_MONITOR_ACTION,
            "mode": row["mode"],  # hits counts a monitor-mode source's finds apart
            "observable_id": row["observable_id"],
            "kind": row["kind"],
            "value": row["value"],
            "source": row["source"],
        }

    def _tell(self, finds: Sequence[RetroFind]) -> None:
        """One threat-feed log line per message and source (after the commit: a crash in
        between loses lines, never writes one twice)."""
        groups: dict[tuple[str, int, str], list[RetroFind]] = {}
        for find in finds:
            groups.setdefault((find.source, find.indexed, find.mode), []).append(find)
        for (source, _indexed, mode), items in groups.items():
            first = items[0]
            what = "; ".join(f"{f.part} {f.kind} {f.value}" for f in items)
            verb = "would have been" if mode == "monitor" else "would now be"
            line = (
                f"retro{' (monitor mode)' if mode == 'monitor' else ''}: message"
                f" {first.message_id or first.name or '-'}"
                f" (from {first.envelope_from or '-'}, subject {first.subject or ''!r},"
                f" {first.passed} at {first.scanned_at.strftime('%Y-%m-%dT%H:%M:%SZ')})"
                f" {verb} {_done(first.action)}"
                + (f" by rule {first.rule}" if first.rule else "")
                + f": {what}"
            )
            if self.feed_log is not None:
                self.feed_log.warning(source, line)
            else:
                self.store.add_log(source, "warning", line, at=self._now())

    # --- running --------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event, every: float = 5.0) -> None:
        """:meth:`run_once` every ``every`` seconds until ``stop`` is set (``feedgate serve``'s
        thread); a failing run is logged and the next one tries again."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the retro-scan for good
                _LOG.exception("retro-scan failed; trying again in %s s", every)
            stop.wait(every)


def _chunks(values: Sequence[int], size: int = 900) -> Iterable[list[int]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _done(action: str) -> str:
    return {
        "reject": "rejected",
        "drop": "dropped",
        "quarantine": "quarantined",
        "tag": "tagged",
        "header": "given the header",
    }.get(action, action)

"""The mail policy in the manager's database: rules, exceptions and the match log.

The one place rules and exceptions are written (the CLI, the REST API and the console call
these methods), so each is checked by one rule (:func:`feedgate.mail.rules.make_rule`,
:func:`feedgate.mail.exceptions.parse_exception`) and every refusal is a
:class:`~feedgate.mail.rules.PolicyError` with an actionable message. Rules are kept at positions
1, 2, ... without gaps; adding at a position or moving a rule shifts the others.

Every change of rules or exceptions bumps ``feed_counters.policy_version`` in its transaction:
a gateway compares :meth:`PolicyStore.version` with the :class:`~feedgate.mail.policy.Policy` it
holds and reloads only when they differ, so every node of a cluster follows within a check.

The match log (:meth:`PolicyStore.record`, :meth:`PolicyStore.hits`) keeps one row per observable
matched in a message (the parts it was in joined), enforced or, for a source in monitor mode,
monitored (its ``mode``: what would have been done, nothing was; ``feedgate hits`` counts the
two apart), for
:data:`DEFAULT_MATCH_LOG_RETENTION` (as the mail index keeps what passed): ``feedgate serve``
calls :meth:`PolicyStore.expire_matches` every hour. It deletes in batches of
:data:`EXPIRE_BATCH` rows, one transaction each, so a first prune of a large log never holds the
write lock for long (on SQLite that lock is the whole file's, and every gateway worker records
its matches through it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from feedgate.db import aware_utc, naive_utc, read_transaction, write_transaction
from feedgate.feeds.sources import MODES
from feedgate.observables import observable_digest

from ._shown import shown
from .exceptions import (
    ExceptionEntry,
    ExceptionList,
    ExceptionValueError,
    classify,
    parse_exception,
)
from .model import ACTION_SEVERITY, PARTS, Action, Match, Part
from .policy import Policy, Verdict
from .rules import PolicyConflict, PolicyError, PolicyNotFound, Rule, check_sources, make_rule
from .schema import POLICY_COUNTER, exceptions_table, match_log, rules_table

__all__ = [
    "DEFAULT_MATCH_LOG_RETENTION",
    "DEFAULT_TOP",
    "EDITABLE",
    "EXPIRE_BATCH",
    "MAX_TOP",
    "Hits",
    "LoggedMatch",
    "ObservableHits",
    "PolicyStore",
    "SourceHits",
    "check_mode",
    "check_top",
]

_counters = sa.table(
    "feed_counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger)
)
#: What :meth:`PolicyStore.edit_rule` can change (an edit changes one of them at least).
EDITABLE: Final = (
    "name",
    "parts",
    "sources",
    "kinds",
    "action",
    "position",
    "enabled",
    "subject_prefix",
)
#: How many observables :meth:`PolicyStore.hits` lists, by default and at most (``feedgate hits
#: --top``, ``GET /api/v1/hits?top=``: one limit for both faces).
DEFAULT_TOP: Final = 10
MAX_TOP: Final = 1000
#: How long the match log keeps a row (``feedgate serve --match-log-days``), and how many rows
#: one transaction of :meth:`PolicyStore.expire_matches` deletes (module doc).
DEFAULT_MATCH_LOG_RETENTION: Final = timedelta(days=14)
EXPIRE_BATCH: Final = 5000


@dataclass(frozen=True, slots=True)
class SourceHits:
    """How often one source's observables were enforced (``mode`` enforce) or would have been
    (monitor) in messages: a source switched from monitor to enforce has a row of each."""

    source: str
    hits: int  # log rows: one per observable per message
    messages: int  # distinct message ids among them
    last: datetime
    mode: str = "enforce"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mode": self.mode,
            "hits": self.hits,
            "messages": self.messages,
            "last": self.last.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ObservableHits:
    """One observable's hits in one mode (enforced, or monitored: would have)."""

    source: str
    kind: str
    value: str
    hits: int
    last: datetime
    mode: str = "enforce"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "mode": self.mode,
            "kind": self.kind,
            "value": self.value,
            "hits": self.hits,
            "last": self.last.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class LoggedMatch:
    """One message an observable matched, as the match log keeps it (:meth:`PolicyStore.
    matches_of`): when, the message's id, the parts it was in, the rule that decided and the
    action (``mode`` monitor: what that rule would have done)."""

    at: datetime
    message_id: str | None
    parts: tuple[str, ...]
    rule: str | None
    action: str
    mode: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "message_id": self.message_id,
            "parts": list(self.parts),
            "rule": self.rule,
            "action": self.action,
            "mode": self.mode,
        }


@dataclass(frozen=True, slots=True)
class Hits:
    """What ``feedgate hits`` shows: counts per source and mode (most hits first) and the
    observables hit most (most first)."""

    sources: tuple[SourceHits, ...]
    top: tuple[ObservableHits, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": [s.to_dict() for s in self.sources],
            "top": [t.to_dict() for t in self.top],
        }


def check_top(top: object) -> int:
    """How many of the observables hit most to list: a whole number from 0 to :data:`MAX_TOP`
    (text of digits too: a query parameter, an option); :class:`PolicyError` for field ``top``
    otherwise, in the same words for the CLI and the REST API."""
    number: object = top
    text = top.strip() if isinstance(top, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= 19:
        number = int(text)
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= MAX_TOP:
        raise PolicyError(
            f"top: {shown(top)} cannot be used: give a whole number from 0 to {MAX_TOP}", "top"
        )
    return number


def check_mode(mode: object) -> str | None:
    """The hits of which mode to count: ``enforce`` or ``monitor`` (any case), None or empty
    for both; :class:`PolicyError` for field ``mode`` otherwise, in the same words for the CLI
    and the REST API."""
    if mode is None or (isinstance(mode, str) and not mode.strip()):
        return None
    text = mode.strip().lower() if isinstance(mode, str) else None
    if text not in MODES:
        raise PolicyError(
            f"mode: {shown(mode)} is not a mode: give {' or '.join(MODES)} (none: both)", "mode"
        )
    return text


def _to_db(moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise PolicyError(f"expected a datetime, got {type(moment).__name__}")
    return naive_utc(moment)


def _from_db(moment: datetime) -> datetime:
    return aware_utc(moment)


def _rule(row: Any) -> Rule:
    return Rule(
        name=row.name,
        action=Action(row.action),
        parts=tuple(Part(p) for p in json.loads(row.parts)),
        sources=tuple(json.loads(row.sources)),
        kinds=tuple(json.loads(row.kinds)),
        enabled=bool(row.enabled),
        position=int(row.position),
        subject_prefix=row.subject_prefix,
    )


def _rule_row(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "enabled": rule.enabled,
        "position": rule.position,
        "parts": json.dumps([str(p) for p in rule.parts]),
        "sources": json.dumps(list(rule.sources)),
        "kinds": json.dumps(list(rule.kinds)),
        "action": str(rule.action),
        "subject_prefix": rule.subject_prefix,
    }


class PolicyStore:
    """Rules, exceptions and the match log over an engine from :func:`feedgate.db.engine`.

    ``source_names`` gives the names of the feed sources, which a rule's ``sources`` must be
    (``FeedStore.source_names``: mail reads feeds only through what feeds offers). Methods are
    thread-safe; several processes may share one database.
    """

    def __init__(self, engine: sa.Engine, source_names: Callable[[], Collection[str]]) -> None:
        from feedgate.migrate import upgrade

        self.engine = engine
        self._source_names = source_names
        upgrade(engine, "feeds")  # revision feeds_0004 made the tables, the counter row, the rule

    # --- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with write_transaction(self.engine) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with read_transaction(self.engine) as conn:
            yield conn

    @staticmethod
    def _bump(conn: sa.Connection) -> None:
        done = conn.execute(
            _counters.update()
            .where(_counters.c.name == POLICY_COUNTER)
            .values(value=_counters.c.value + 1)
        )
        if done.rowcount == 0:  # a database whose counter row was deleted by hand
            conn.execute(_counters.insert().values(name=POLICY_COUNTER, value=1))

    def version(self) -> int:
        """The policy's change counter (see the module doc)."""
        with self._read() as conn:
            value = conn.execute(
                sa.select(_counters.c.value).where(_counters.c.name == POLICY_COUNTER)
            ).scalar()
        return int(value or 0)

    def load(self) -> Policy:
        """The rules and exceptions as of one moment, with the counter they go with."""
        with self._read() as conn:
            version = conn.execute(
                sa.select(_counters.c.value).where(_counters.c.name == POLICY_COUNTER)
            ).scalar()
            rules = self._rules(conn)
            entries = self._exceptions(conn)
        return Policy(tuple(rules), ExceptionList(entries), int(version or 0))

    # --- rules ------------------------------------------------------------------------------

    @staticmethod
    def _rules(conn: sa.Connection) -> list[Rule]:
        query = sa.select(rules_table).order_by(rules_table.c.position, rules_table.c.id)
        return [_rule(row) for row in conn.execute(query)]

    @staticmethod
    def _unknown(name: str, rules: Iterable[Rule]) -> PolicyNotFound:
        names = [r.name for r in rules]
        there = f"the rules are {', '.join(names)}" if names else "there are no rules"
        return PolicyNotFound(f"no rule named {name!r}: {there}", "name")

    @staticmethod
    def _renumber(conn: sa.Connection, names: list[str]) -> None:
        """Store ``names`` at positions 1, 2, ... (only the rows whose position changes)."""
        current = dict(conn.execute(sa.select(rules_table.c.name, rules_table.c.position)).all())
        for index, name in enumerate(names, start=1):
            if current.get(name) != index:
                conn.execute(
                    rules_table.update().where(rules_table.c.name == name).values(position=index)
                )

    @staticmethod
    def _place(names: list[str], name: str, position: object) -> list[str]:
        """``names`` with ``name`` put at ``position`` (1 = first; past the end: last)."""
        if position is None:
            return [*names, name]
        usage = "give 1 for the first rule, 2 for the second, ... (none: after the last)"
        if isinstance(position, bool) or not isinstance(position, int):
            raise PolicyError(
                f"position: expected a whole number, got {shown(position)}: {usage}", "position"
            )
        if position < 1:
            raise PolicyError(f"position: {position} cannot be used: {usage}", "position")
        index = min(position, len(names) + 1) - 1
        return [*names[:index], name, *names[index:]]

    def list_rules(self) -> list[Rule]:
        """Every rule, in order."""
        with self._read() as conn:
            return self._rules(conn)

    def get_rule(self, name: str) -> Rule:
        """The rule named ``name``; :class:`PolicyError` naming the rules there are if none."""
        with self._read() as conn:
            rules = self._rules(conn)
        for rule in rules:
            if rule.name == name:
                return rule
        raise self._unknown(name, rules)

    def add_rule(
        self,
        name: str,
        parts: object = (),
        sources: object = (),
        kinds: object = (),
        action: object = Action.QUARANTINE,
        position: int | None = None,
        enabled: bool = True,
        subject_prefix: str | None = None,
    ) -> Rule:
        """Store a new rule at ``position`` (None: last) and return it as stored."""
        rule = make_rule(
            name,
            action=action,
            parts=parts,
            sources=sources,
            kinds=kinds,
            enabled=enabled,
            subject_prefix=subject_prefix,
            known_sources=self._source_names(),
        )
        with self._write() as conn:
            rules = self._rules(conn)
            if any(r.name == rule.name for r in rules):
                raise PolicyConflict(
                    f"a rule named {rule.name!r} exists: choose another name, or edit that rule",
                    "name",
                )
            order = self._place([r.name for r in rules], rule.name, position)
            conn.execute(rules_table.insert().values(**_rule_row(replace(rule, position=0))))
            self._renumber(conn, order)
            self._bump(conn)
            return next(r for r in self._rules(conn) if r.name == rule.name)

    def edit_rule(self, name: str, /, **changes: Any) -> Rule:
        """Change a rule's fields (``name`` renames it, ``position`` moves it); return it as
        stored. Fields not given stay; a rule that stops being a tag rule drops its prefix."""
        if not changes:
            raise PolicyError(
                f"nothing to change: give one or more of the rule's fields {', '.join(EDITABLE)}"
            )
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise PolicyError(
                f"unknown field {', '.join(sorted(unknown))}: a rule's fields are "
                f"{', '.join(EDITABLE)}",
                sorted(unknown)[0],
            )
        with self._write() as conn:
            rules = self._rules(conn)
            old = next((r for r in rules if r.name == name), None)
            if old is None:
                raise self._unknown(name, rules)
            action = changes.get("action", old.action)
            if "subject_prefix" in changes:
                prefix = changes["subject_prefix"]
            else:  # kept while the rule tags (None: the default prefix), dropped otherwise
                prefix = old.subject_prefix if _action_is_tag(action) else None
            new = make_rule(
                changes.get("name", old.name),
                action=action,
                parts=changes.get("parts", old.parts),
                sources=changes.get("sources", old.sources),
                kinds=changes.get("kinds", old.kinds),
                enabled=changes.get("enabled", old.enabled),
                subject_prefix=prefix,
                position=old.position,
            )
            if "sources" in changes:  # a rule naming a source deleted since may still be edited
                check_sources(new.sources, self._source_names())
            if new.name != old.name and any(r.name == new.name for r in rules):
                raise PolicyConflict(
                    f"a rule named {new.name!r} exists: choose another name", "name"
                )
            conn.execute(
                rules_table.update().where(rules_table.c.name == old.name).values(**_rule_row(new))
            )
            if "position" in changes:
                others = [r.name for r in rules if r.name != old.name]
                self._renumber(conn, self._place(others, new.name, changes["position"]))
            self._bump(conn)
            return next(r for r in self._rules(conn) if r.name == new.name)

    def set_enabled(self, name: str, enabled: bool) -> Rule:
        """Enable or disable a rule (a disabled rule matches nothing)."""
        return self.edit_rule(name, enabled=enabled)

    def delete_rule(self, name: str) -> None:
        """Delete a rule (the default rule too: it is not made again)."""
        with self._write() as conn:
            rules = self._rules(conn)
            if not any(r.name == name for r in rules):
                raise self._unknown(name, rules)
            conn.execute(rules_table.delete().where(rules_table.c.name == name))
            self._renumber(conn, [r.name for r in rules if r.name != name])
            self._bump(conn)

    # --- exceptions -------------------------------------------------------------------------

    @staticmethod
    def _exceptions(conn: sa.Connection) -> list[ExceptionEntry]:
        t = exceptions_table
        query = sa.select(t.c.kind, t.c.value, t.c.note).order_by(t.c.kind, t.c.value)
        return [ExceptionEntry(kind, value, note) for kind, value, note in conn.execute(query)]

    def list_exceptions(self) -> list[ExceptionEntry]:
        """Every exception, by kind and value."""
        with self._read() as conn:
            return self._exceptions(conn)

    def add_exception(self, value: str, note: str) -> ExceptionEntry:
        """Store an exception (its kind read from the value) and return it as stored."""
        try:
            entry = parse_exception(value, note)
        except ExceptionValueError as exc:
            raise PolicyError(str(exc), exc.field) from None
        digest = observable_digest(entry.kind, entry.value)
        with self._write() as conn:
            t = exceptions_table
            there = self._same(conn, entry.kind, entry.value)
            if there:
                value, note = there[0][1], there[0][2]
                raise PolicyConflict(
                    f"{value} is on the exception list already (note: {note})", "value"
                )
            conn.execute(
                t.insert().values(
                    digest=digest, kind=entry.kind, value=entry.value, note=entry.note
                )
            )
            self._bump(conn)
        return entry

    def delete_exception(self, value: str) -> None:
        """Delete the exception ``value`` names (spelt any way that normalises the same)."""
        try:
            kind, normal = classify(value)
        except ExceptionValueError as exc:
            raise PolicyError(str(exc), "value") from None
        with self._write() as conn:
            t = exceptions_table
            rows = self._same(conn, str(kind), normal)
            if not rows:
                raise PolicyNotFound(
                    f"{normal} is not on the exception list; 'feedgate exception list --format"
                    " jsonl' shows the values exactly",
                    "value",
                )
            conn.execute(t.delete().where(t.c.digest.in_([digest for digest, _v, _n in rows])))
            self._bump(conn)

    @staticmethod
    def _same(conn: sa.Connection, kind: str, normal: str) -> list[tuple[bytes, str, str]]:
        """The stored exceptions that are the exception ``normal`` (digest, value, note): the
        one by its digest and, for an e-mail address, any stored in another case (rows from
        before addresses were stored lower-cased), so that one delete removes them all."""
        t = exceptions_table
        if kind != "email":
            where = t.c.digest == observable_digest(kind, normal)
        else:  # lower() in SQL is ASCII-only in SQLite: compare in Python, on the e-mail rows
            where = t.c.kind == "email"
        rows = conn.execute(sa.select(t.c.digest, t.c.value, t.c.note).where(where)).all()
        return [
            (bytes(digest), value, note)
            for digest, value, note in rows
            if kind != "email" or value.lower() == normal
        ]

    # --- the match log ----------------------------------------------------------------------

    def record(self, verdict: Verdict, message_id: str | None, at: datetime) -> int:
        """Log the observables ``verdict`` enforced (one row per observable, with the parts of
        the message it was in; mode ``enforce``, the message's action), at ``at``, and those of
        monitor-mode sources as "would have" (mode ``monitor``, the rule that would have
        decided and its action); returns the rows written."""
        values = [
            *self._rows(verdict, verdict.matches, verdict.match_rules, "enforce", at),
            *self._rows(verdict, verdict.monitored, verdict.monitored_rules, "monitor", at),
        ]
        if not values:
            return 0
        for row in values:
            row["message_id"] = message_id
        with self._write() as conn:
            conn.execute(match_log.insert(), values)
        return len(values)

    def expire_matches(
        self,
        now: datetime,
        retention: timedelta = DEFAULT_MATCH_LOG_RETENTION,
        *,
        batch: int = EXPIRE_BATCH,
    ) -> int:
        """Delete the match log's rows older than ``retention`` before ``now``, ``batch`` rows
        per transaction (module doc); how many were deleted. Rows recorded meanwhile are newer
        than the cutoff, so the loop ends."""
        if retention <= timedelta(0):
            raise PolicyError("the match log's retention must be more than 0 days", "retention")
        if batch < 1:
            raise PolicyError(f"a batch of {batch} rows deletes nothing: give 1 or more", "batch")
        cutoff = _to_db(now) - retention
        m = match_log
        oldest = sa.select(m.c.id).where(m.c.at < cutoff).order_by(m.c.at).limit(batch)
        total = 0
        while True:
            with self._write() as conn:
                done = int(conn.execute(m.delete().where(m.c.id.in_(oldest))).rowcount or 0)
            total += done
            if done < batch:
                return total

    def _rows(
        self,
        verdict: Verdict,
        matches: Sequence[Match],
        applies: Sequence[tuple[str, ...]],
        mode: str,
        at: datetime,
    ) -> list[dict[str, Any]]:
        rows: dict[tuple[str, int, str, str], dict[str, Any]] = {}
        for match, applied in zip(matches, applies, strict=True):
            key = (match.source, match.observable_id, match.kind, match.value)
            row = rows.get(key)
            if row is None:
                row = rows[key] = {
                    "at": _to_db(at),
                    "parts": set(),
                    "rule": None,
                    "action": str(verdict.action),
                    "mode": mode,
                    "observable_id": match.observable_id,
                    "kind": match.kind,
                    "value": match.value,
                    "source": match.source,
                    "_severity": (-1, 0),
                }
            row["parts"].add(match.part)
            if applied and self._rank(verdict, applied[0]) > row["_severity"]:
                row["rule"], row["_severity"] = applied[0], self._rank(verdict, applied[0])
        values = []
        for row in rows.values():
            parts = row.pop("parts")
            row.pop("_severity")
            row["parts"] = ",".join(str(p) for p in PARTS if p in parts)
            if mode == "monitor":  # nothing was done for it: what its rule would have done
                rule = row["rule"]
                row["action"] = str(verdict.rule_actions.get(rule, Action.DELIVER))
            values.append(row)
        return values

    @staticmethod
    def _rank(verdict: Verdict, rule: str) -> tuple[int, int]:
        """Which rule decides for an observable: the most severe, the first in order on ties
        (a rule only monitored matches meet: after the enforced ones, in the order met)."""
        action = verdict.rule_actions.get(rule, Action.DELIVER)
        order = list(verdict.rules)
        for applied in verdict.monitored_rules:
            order.extend(r for r in applied if r not in order)
        return ACTION_SEVERITY[action], -order.index(rule)

    def matches_of(self, source: str, observable_id: int, limit: int = 50) -> list[LoggedMatch]:
        """The messages the observable ``observable_id`` of ``source`` matched, newest first,
        ``limit`` at most. The log has no index on the observable: the query walks the
        source's rows newest first (``ix_mail_match_log_source_at``) and stops at ``limit``,
        so an observable hit often costs little and a rare one a scan of its source's
        retained rows (14 days by default), never of the whole log."""
        m = match_log
        query = (
            sa.select(m.c.at, m.c.message_id, m.c.parts, m.c.rule, m.c.action, m.c.mode)
            .where(m.c.source == source, m.c.observable_id == observable_id)
            .order_by(m.c.at.desc(), m.c.id.desc())
            .limit(max(0, limit))
        )
        with self._read() as conn:
            return [
                LoggedMatch(
                    _from_db(at),
                    message_id,
                    tuple(p for p in parts.split(",") if p),
                    rule,
                    action,
                    mode,
                )
                for at, message_id, parts, rule, action, mode in conn.execute(query)
            ]

    def hits(
        self,
        source: str | None = None,
        since: datetime | None = None,
        top: int = DEFAULT_TOP,
        mode: str | None = None,
    ) -> Hits:
        """Per-source counts and the ``top`` observables hit most, from ``since`` on (None: the
        whole log), for one source or all, each mode apart (``mode``: only that one's, checked
        by :func:`check_mode`; None: both); ``top`` is checked by :func:`check_top`."""
        top = check_top(top)
        mode = check_mode(mode)
        m = match_log
        where: list[sa.ColumnElement[bool]] = []
        if source is not None:
            where.append(m.c.source == source)
        if since is not None:
            where.append(m.c.at >= _to_db(since))
        if mode is not None:
            where.append(m.c.mode == mode)
        per_source = (
            sa.select(
                m.c.source,
                m.c.mode,
                sa.func.count(),
                sa.func.count(sa.distinct(m.c.message_id)),
                sa.func.max(m.c.at),
            )
            .where(*where)
            .group_by(m.c.source, m.c.mode)
            .order_by(sa.func.count().desc(), m.c.source, m.c.mode)
        )
        count = sa.func.count().label("n")
        most = (
            sa.select(m.c.source, m.c.mode, m.c.kind, m.c.value, count, sa.func.max(m.c.at))
            .where(*where)
            .group_by(m.c.source, m.c.mode, m.c.kind, m.c.value)
            .order_by(count.desc(), m.c.source, m.c.mode, m.c.kind, m.c.value)
            .limit(top)
        )
        with self._read() as conn:
            sources = tuple(
                SourceHits(name, int(n), int(msgs), _from_db(last), mode=row_mode)
                for name, row_mode, n, msgs, last in conn.execute(per_source)
            )
            tops = tuple(
                ObservableHits(src, kind, value, int(n), _from_db(last), mode=row_mode)
                for src, row_mode, kind, value, n, last in conn.execute(most)
            )
        return Hits(sources, tops)


def _action_is_tag(action: object) -> bool:
    return (action.strip().lower() if isinstance(action, str) else action) == Action.TAG.value

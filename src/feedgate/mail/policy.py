"""A message's verdict: which matches count, which rules they meet, and what is done.

:func:`evaluate` takes what the matcher found in a message and decides, in this order for each
match:

1. **excepted**: the message's value (or the observable) is on the exception list; it never
   counts, whatever the feed says (design.md "Mail": the exception list always wins);
2. **suppressed**: the observable would block the world (:func:`feedgate.mail.gate.gate_reason`)
   and its source has the false-positive gate on (the default);
3. **monitored**: its source is in monitor mode (``Source.mode``): reported with the rules that
   *would have* applied, and it takes no part in the action;
4. **enforced**: every other match; the enabled rules that apply to it are reported.

The message's action is the most severe of its matching rules' actions (``ACTION_SEVERITY``);
``deliver`` when no enabled rule matches. Tag and header rank alike and both apply: the Subject
prefix is the first matching tag rule's, the header names what the header rules matched. Among
rules of equal severity the first in order names the action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .exceptions import ExceptionList
from .gate import gate_reason
from .model import ACTION_SEVERITY, Action, Inspection, Match, Offer, Part, Skipped
from .rules import Rule

__all__ = [
    "HEADER_NAME",
    "MAX_HEADER_ENTRIES",
    "Excepted",
    "Policy",
    "Suppressed",
    "Verdict",
    "WouldHave",
    "evaluate",
    "would_have_summary",
]

#: The header a header rule adds, naming the source and observable of each match.
HEADER_NAME: Final = "X-Feedgate-Threat"
#: Matches named in the header at most (the rest are counted): a header line stays short.
MAX_HEADER_ENTRIES: Final = 10
_MAX_HEADER_VALUE: Final = 180  # characters of one observable's value in the header
_MAX_REPLY: Final = 400  # SMTP limits a reply line to 512 octets


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules (in order) and exceptions a gateway decides with, and the counter it was read
    at (``feed_counters.policy_version``) to know when to read it again."""

    rules: tuple[Rule, ...] = ()
    exceptions: ExceptionList = field(default_factory=ExceptionList)
    version: int = 0


@dataclass(frozen=True, slots=True)
class Suppressed:
    """A match the false-positive gate kept from counting, and why."""

    match: Match
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.match.to_dict(), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Excepted:
    """A match the exception list kept from counting, with the exception's value."""

    match: Match
    exception: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.match.to_dict(), "exception": self.exception}


@dataclass(frozen=True, slots=True)
class WouldHave:
    """A match of a monitor-mode source and what it would have done were the source enforced:
    the enabled rules that apply to it (the most severe first) and the first one's action
    (``deliver`` when no enabled rule applies: it would have done nothing). What the mail log,
    the milter's line and ``feedgate scan`` say, so an admin can judge a new source before
    switching it to enforce."""

    match: Match
    rules: tuple[str, ...]
    action: Action

    def to_dict(self) -> dict[str, Any]:
        """The mail log's ``would_have`` entry: where, what, whose, and what would have been
        done (no context: the log line stays short)."""
        m = self.match
        return {
            "part": str(m.part),
            "kind": m.kind,
            "value": m.value,
            "source": m.source,
            "rules": list(self.rules),
            "action": str(self.action),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """What is done to one message, and everything that led there.

    ``rules`` names the matching rules in order; ``match_rules[i]`` the rules that apply to
    ``matches[i]``, the most severe first (in order among equals): the first decided for it.
    ``subject_prefix`` (tag), ``header`` (header: the value of :data:`HEADER_NAME`) and
    ``smtp_reply`` (reject: the whole reply, ``550 5.7.1 ...``) are set when the action does
    that.
    """

    message: str | None
    action: Action
    rules: tuple[str, ...] = ()
    matches: tuple[Match, ...] = ()
    match_rules: tuple[tuple[str, ...], ...] = ()
    suppressed: tuple[Suppressed, ...] = ()
    excepted: tuple[Excepted, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    subject_prefix: str | None = None
    header: str | None = None
    smtp_reply: str | None = None
    #: Each matching rule's action, by name (the match log records the rule that decided).
    rule_actions: Mapping[str, Action] = field(default_factory=dict)
    #: Matches of sources in monitor mode: what would have counted, with no effect on the
    #: action; ``monitored_rules[i]`` the enabled rules that would apply to ``monitored[i]``
    #: (the most severe first), their actions in ``rule_actions`` too.
    monitored: tuple[Match, ...] = ()
    monitored_rules: tuple[tuple[str, ...], ...] = ()

    def would_have(self) -> tuple[WouldHave, ...]:
        """Each monitored match with the rules and the action it would have had."""
        return tuple(
            WouldHave(
                match,
                rules,
                self.rule_actions.get(rules[0], Action.DELIVER) if rules else Action.DELIVER,
            )
            for match, rules in zip(self.monitored, self.monitored_rules, strict=True)
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``feedgate scan --json`` for this message."""
        return {
            "message": self.message,
            "action": str(self.action),
            "rules": list(self.rules),
            "matches": [m.to_dict() for m in self.matches],
            "suppressed": [s.to_dict() for s in self.suppressed],
            "excepted": [e.to_dict() for e in self.excepted],
            "skipped": [s.to_dict() for s in self.skipped],
            "monitored": [
                {**w.match.to_dict(), "rules": list(w.rules), "action": str(w.action)}
                for w in self.would_have()
            ],
        }


def would_have_summary(verdict: Verdict) -> str | None:
    """What the monitor-mode sources would have done to the message, one clause per source,
    e.g. ``quarantine [threat-feeds] (source otx, monitor mode)``: the most severe action its
    matches would have had and the rules that would have taken it; None without monitored
    matches. The milter's log line ends with it (``...: deliver; would have: ...``)."""
    by_source: dict[str, list[WouldHave]] = {}
    for would in verdict.would_have():
        by_source.setdefault(would.match.source, []).append(would)
    clauses = []
    for source, items in by_source.items():
        top = max(ACTION_SEVERITY[w.action] for w in items)
        action = next(w.action for w in items if ACTION_SEVERITY[w.action] == top)
        rules: list[str] = []
        for w in items:
            if w.rules and ACTION_SEVERITY[w.action] == top and w.rules[0] not in rules:
                rules.append(w.rules[0])
        named = f" [{', '.join(rules)}]" if rules else " (no rule applies)"
        clauses.append(f"{action}{named} (source {source}, monitor mode)")
    return "; ".join(clauses) if clauses else None


def _offers_by_place(offers: Sequence[Offer]) -> dict[tuple[str, str], list[Offer]]:
    found: dict[tuple[str, str], list[Offer]] = {}
    for offer in offers:
        found.setdefault((str(offer.part), offer.seen), []).append(offer)
    return found


def _exception_for(
    match: Match, places: Mapping[tuple[str, str], list[Offer]], exceptions: ExceptionList
) -> str | None:
    """The exception covering what the message offered where ``match`` was found (or the
    observable itself), or None."""
    for offer in places.get((str(match.part), match.seen), ()):
        entry = exceptions.covering(str(offer.lookup), offer.value)
        if entry is not None:
            return entry.value
    entry = exceptions.covering(match.kind, match.value)
    return None if entry is None else entry.value


def _clean(text: str, limit: int) -> str:
    """Text fit for one header or reply line: no control characters, at most ``limit``."""
    out = "".join(c if c.isprintable() and c.isascii() else "?" for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _header(matches: Sequence[Match]) -> str:
    entries: list[str] = []
    for m in matches:
        entry = f"{m.source} {m.kind} {_clean(m.value, _MAX_HEADER_VALUE)}"
        if entry not in entries:
            entries.append(entry)
    shown = entries[:MAX_HEADER_ENTRIES]
    more = len(entries) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more else "")


#: How the reject reply names what was listed: the kind of observable, as the sender knows it.
_SAID: Final = {
    "ipv4": "an IP address",
    "ipv6": "an IP address",
    "cidr": "an IP address",
    "domain": "a domain",
    "url": "a URL",
    "email": "an e-mail address",
    "md5": "an attachment",
    "sha1": "an attachment",
    "sha256": "an attachment",
}


def _said(match: Match) -> str:
    if match.part == Part.CLIENT_IP:
        return "the sending server's IP address"
    return _SAID.get(match.kind, "an observable")


def _reply(matches: Sequence[Match]) -> str:
    """The reject reply: the source names and observable kinds only (no value: it may be what
    a partner shared under TLP, and the sender learns nothing to work around), in words a
    sender's admin reads: "a URL and the sending server's IP address listed by threat feed
    X"."""
    by_source: dict[str, list[str]] = {}
    for m in matches:
        said = by_source.setdefault(m.source, [])
        if _said(m) not in said:
            said.append(_said(m))
    listed = "; ".join(
        f"{_and(said)} listed by threat feed {source}" for source, said in by_source.items()
    )
    return "550 5.7.1 " + _clean(f"Message refused: {listed}", _MAX_REPLY)


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def evaluate(
    matches: Sequence[Match],
    inspection: Inspection,
    policy: Policy,
    *,
    fp_gates: Mapping[str, bool] | None = None,
    modes: Mapping[str, str] | None = None,
) -> Verdict:
    """The verdict on the message ``inspection`` describes, given the ``matches`` the matcher
    found in it. ``fp_gates`` holds each source's false-positive gate switch (a source not in
    it has the gate on, the default), ``modes`` each source's mode (a source not in it
    enforces; ``monitor``: its matches are only reported, as :attr:`Verdict.monitored`)."""
    gates = fp_gates or {}
    source_modes = modes or {}
    monitored: list[Match] = []
    places = _offers_by_place(inspection.offers)
    enforced: list[Match] = []
    suppressed: list[Suppressed] = []
    excepted: list[Excepted] = []
    for match in matches:
        exception = _exception_for(match, places, policy.exceptions)
        if exception is not None:
            excepted.append(Excepted(match, exception))
            continue
        if gates.get(match.source, True):
            reason = gate_reason(match.kind, match.value)
            if reason is not None:
                suppressed.append(Suppressed(match, reason))
                continue
        if source_modes.get(match.source) == "monitor":
            monitored.append(match)
            continue
        enforced.append(match)

    rules = sorted((r for r in policy.rules if r.enabled), key=lambda r: r.position)
    per_match = [tuple(r for r in rules if r.matches(m)) for m in enforced]
    matching = [r for r in rules if any(r in applied for applied in per_match)]
    would = [tuple(r for r in rules if r.matches(m)) for m in monitored]
    action = Action.DELIVER
    if matching:
        top = max(r.severity for r in matching)
        action = next(r.action for r in matching if r.severity == top)
    applies = ACTION_SEVERITY[action] == ACTION_SEVERITY[Action.TAG]

    def matched_by(wanted: Action) -> list[Match]:
        return [
            m
            for m, applied in zip(enforced, per_match, strict=True)
            if any(r.action is wanted for r in applied)
        ]

    prefix = next((r.subject_prefix for r in matching if r.action is Action.TAG), None)
    header_matches = matched_by(Action.HEADER)
    return Verdict(
        message=inspection.message_id,
        action=action,
        rules=tuple(r.name for r in matching),
        matches=tuple(enforced),
        match_rules=tuple(
            tuple(r.name for r in sorted(applied, key=lambda r: -r.severity))  # stable: in order
            for applied in per_match
        ),
        suppressed=tuple(suppressed),
        excepted=tuple(excepted),
        skipped=tuple(inspection.skipped),
        subject_prefix=prefix if applies else None,
        header=_header(header_matches) if applies and header_matches else None,
        smtp_reply=_reply(matched_by(Action.REJECT)) if action is Action.REJECT else None,
        rule_actions={
            r.name: r.action for r in rules if r in matching or any(r in w for w in would)
        },
        monitored=tuple(monitored),
        monitored_rules=tuple(
            tuple(r.name for r in sorted(applied, key=lambda r: -r.severity)) for applied in would
        ),
    )

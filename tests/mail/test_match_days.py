"""mail.match_days on SQLite and a real PostgreSQL: the match log counted per UTC day sums to
what PolicyStore.hits counts over the same window, and days() runs over the window's days to
the given clock, empty ones included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feedgate.db import engine
from feedgate.mail.match_days import days, match_days
from feedgate.mail.model import Action, Match, Part
from feedgate.mail.policy import Verdict
from feedgate.mail.policy_store import PolicyStore
from pgserver import Database


def verdict(action: Action, *matches: Match) -> Verdict:
    rules = tuple(("r",) for _ in matches)
    return Verdict(None, action, ("r",), matches, rules, rule_actions={"r": action})


def test_days_sum_to_the_hits_of_the_window(any_db: Database) -> None:
    eng = engine(any_db.url)
    policy = PolicyStore(eng, lambda: ["a", "b"])
    now = datetime.now(UTC).replace(microsecond=0)
    ip = Match(Part.CLIENT_IP, "ipv4", "192.0.2.7", "192.0.2.7", "a", 1, {})
    url = Match(Part.URL, "domain", "bad.example", "bad.example", "a", 2, {})
    dom = Match(Part.URL, "domain", "evil.example", "evil.example", "b", 3, {})
    policy.record(verdict(Action.QUARANTINE, ip, url), "<1@x>", now - timedelta(days=2))
    policy.record(verdict(Action.QUARANTINE, ip), "<2@x>", now)
    policy.record(verdict(Action.TAG, dom), "<3@x>", now)
    policy.record(verdict(Action.TAG, dom), "<old@x>", now - timedelta(days=30))
    since = now - timedelta(days=7)

    found = match_days(eng, since)
    today, before = now.date(), (now - timedelta(days=2)).date()
    assert [(d.day, d.source, d.hits, d.messages) for d in found.sources] == [
        (before, "a", 2, 1),
        (today, "a", 1, 1),
        (today, "b", 1, 1),
    ]
    assert [(d.day, d.action, d.messages) for d in found.actions] == [
        (before, "quarantine", 1),
        (today, "quarantine", 1),
        (today, "tag", 1),
    ]
    hits = {s.source: (s.hits, s.messages) for s in policy.hits(since=since).sources}
    summed: dict[str, tuple[int, int]] = {}
    for d in found.sources:
        h, m = summed.get(d.source, (0, 0))
        summed[d.source] = (h + d.hits, m + d.messages)
    assert summed == hits == {"a": (3, 2), "b": (1, 1)}

    shown = days(now, since, found)
    assert shown[0] == since.date() and shown[-1] == today and len(shown) == 8
    everything = match_days(eng)
    assert days(now, None, everything)[0] == (now - timedelta(days=30)).date()
    assert days(now, None, match_days(eng, now + timedelta(days=1))) == [today]
    eng.dispose()

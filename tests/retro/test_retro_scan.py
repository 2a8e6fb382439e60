"""The retro-scan over a real FeedStore: a poll (segment upsert) after a message was delivered
finds it for every kind, with the current policy (exceptions, gate, enabled source, kinds,
monitor mode), once (a restart neither repeats nor misses), and says so in the threat-feed log
and the match log."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from retro_helpers import Clock, message, obs, open_store, poll

from feedgate.feeds import secrets
from feedgate.feeds.store import FeedStore
from feedgate.mail.mailindex import MailIndex
from feedgate.mail.matcher import Matcher
from feedgate.mail.model import Action
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.retro import RETRO_ACTION, RETRO_MONITOR_ACTION, RetroScanner, caught
from feedgate.mail.scanner import Scanner
from feedgate.mail.schema import match_log
from feedgate.observables import Kind

ATTACHMENT = b"MZ\x90\x00 not really a program, but bytes all the same\n"


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@dataclass
class World:
    store: FeedStore
    policy: PolicyStore
    index: MailIndex
    scanner: Scanner
    retro: RetroScanner
    clock: Clock

    def restarted(self) -> RetroScanner:
        """A new process's retro-scanner on the same database."""
        return RetroScanner(
            self.store, self.policy, MailIndex(self.store.engine), now=self.clock.now
        )

    def set_source(self, **changes: Any) -> None:
        source = self.store.get_source("otx")
        assert source is not None
        self.store.update_source(dataclasses.replace(source, **changes))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = open_store(str(tmp_path / "feeds.db"), "otx")
    clock = Clock()
    policy = PolicyStore(store.engine, store.source_names)
    index = MailIndex(store.engine)
    scanner = Scanner(
        store,
        policy,
        now=clock.now,
        matcher=Matcher(store, clock=clock.tick),
        clock=clock.tick,
        mail_index=index,
    )
    yield World(
        store, policy, index, scanner, RetroScanner(store, policy, index, now=clock.now), clock
    )
    store.close()


def deliver(world: World) -> None:
    """The message of every test: delivered now (nothing is known of it yet), then time passes."""
    raw = message(
        "Your invoice: http://www.evil.example/pay?id=7\n",
        subject="Invoice 7",
        sender="Billing <billing@phish.example>",
        message_id="<inv7@phish.example>",
        attachment=ATTACHMENT,
    )
    verdict = world.scanner.scan(
        raw, message="Q1", client_ip="203.0.113.9", envelope_from="b@phish.example"
    )
    assert verdict.action == "deliver"
    world.clock.advance(timedelta(hours=3))


def log_actions(store: FeedStore) -> list[tuple[str, str | None, str]]:
    m = match_log
    with store.engine.connect() as conn:
        query = sa.select(m.c.action, m.c.message_id, m.c.value).order_by(m.c.id)
        return [(a, i, v) for a, i, v in conn.execute(query)]


KINDS = [
    (Kind.URL, "http://www.evil.example/pay?id=7", "url", "url"),
    (Kind.DOMAIN, "evil.example", "domain", "url"),  # via the parent of www.evil.example
    (Kind.EMAIL, "Billing@Phish.example", "email", "from"),  # any case
    (Kind.CIDR, "203.0.113.0/24", "cidr", "client-ip"),
    (Kind.SHA256, hashlib.sha256(ATTACHMENT).hexdigest(), "sha256", "attachment"),
]


@pytest.mark.parametrize(("kind", "value", "stored_kind", "part"), KINDS, ids=[k[2] for k in KINDS])
def test_a_new_poll_finds_the_delivered_message(
    world: World, kind: Kind, value: str, stored_kind: str, part: str
) -> None:
    deliver(world)
    poll(world.store, obs(kind, value), at=world.clock.now())
    [find] = world.retro.run_once()
    assert (find.kind, find.source, find.action, find.passed, find.mode) == (
        stored_kind,
        "otx",
        "quarantine",
        "deliver",
        "enforce",
    )
    assert part in find.part.split(",")
    assert (find.name, find.message_id, find.subject) == ("Q1", "<inv7@phish.example>", "Invoice 7")
    assert find.envelope_from == "b@phish.example" and find.client_ip == "203.0.113.9"
    assert find.scanned_at == world.clock.now() - timedelta(hours=3)
    assert find.at == world.clock.now() and find.rule == "threat-feeds"
    assert log_actions(world.store) == [(RETRO_ACTION, "<inv7@phish.example>", find.value)]
    [line] = [e for e in world.store.log_entries() if e.message.startswith("retro")]
    assert line.source == "otx" and line.level == "warning"
    assert "<inv7@phish.example>" in line.message and "would now be quarantined" in line.message


def test_reported_once_across_runs_and_restarts(world: World) -> None:
    deliver(world)
    poll(world.store, obs(Kind.DOMAIN, "evil.example"), at=world.clock.now())
    assert len(world.retro.run_once()) == 1
    assert world.retro.run_once() == []
    assert world.restarted().run_once() == []
    assert world.retro.version() == world.store.version()
    # the same observable seen again in the next poll: nothing new
    poll(world.store, obs(Kind.DOMAIN, "evil.example"), at=world.clock.now())
    assert world.restarted().run_once() == []
    # a poll while no retro-scan runs is matched by the next one, whoever runs it
    poll(world.store, obs(Kind.URL, "http://www.evil.example/pay?id=7"), at=world.clock.now())
    [find] = world.restarted().run_once()
    assert find.kind == "url"
    assert [a for a, _i, _v in log_actions(world.store)] == [RETRO_ACTION, RETRO_ACTION]


def test_the_current_policy_decides(world: World) -> None:
    deliver(world)
    world.policy.add_exception("evil.example", "a partner of ours")
    world.set_source(enforce=frozenset({"url"}))  # no domains, no addresses
    poll(
        world.store,
        obs(Kind.DOMAIN, "evil.example"),  # excepted
        obs(Kind.EMAIL, "billing@phish.example"),  # a kind the source does not enforce
        at=world.clock.now(),
    )
    assert world.retro.run_once() == []
    world.set_source(enabled=False)
    poll(
        world.store, obs(Kind.SHA256, hashlib.sha256(ATTACHMENT).hexdigest()), at=world.clock.now()
    )
    assert world.retro.run_once() == []  # a disabled source's observables catch nothing
    assert log_actions(world.store) == []


def test_the_gate_keeps_what_would_block_the_world(world: World) -> None:
    world.scanner.scan(message("see https://www.google.com/search?q=x\n"), message="Q2")
    poll(world.store, obs(Kind.DOMAIN, "google.com"), at=world.clock.now())
    assert world.retro.run_once() == []


def test_a_message_caught_at_its_scan_is_not_indexed_nor_found_again(world: World) -> None:
    poll(world.store, obs(Kind.DOMAIN, "evil.example"), at=world.clock.now())
    world.clock.advance(timedelta(seconds=2))
    raw = message("http://www.evil.example/\n")
    assert world.scanner.scan(raw).action == "quarantine"
    poll(world.store, obs(Kind.URL, "http://www.evil.example/"), at=world.clock.now())
    assert world.retro.run_once() == []


def test_a_monitor_source_shows_what_it_would_have_caught(world: World) -> None:
    deliver(world)
    world.set_source(mode="monitor")
    poll(world.store, obs(Kind.CIDR, "203.0.113.0/24"), at=world.clock.now())
    [find] = world.retro.run_once()
    assert (find.mode, find.action, find.kind) == ("monitor", "quarantine", "cidr")
    assert log_actions(world.store) == [
        (RETRO_MONITOR_ACTION, "<inv7@phish.example>", "203.0.113.0/24")
    ]
    hits = world.policy.hits(since=None)  # counted as monitored, never as enforced
    assert [(h.source, h.mode, h.hits) for h in hits.sources] == [("otx", "monitor", 1)]
    assert world.policy.hits(since=None, mode="enforce").sources == ()
    [line] = [e for e in world.store.log_entries() if e.message.startswith("retro")]
    assert "retro (monitor mode)" in line.message and "would have been quarantined" in line.message


def test_messages_past_the_retention_are_not_reported(world: World) -> None:
    deliver(world)
    world.clock.advance(timedelta(days=15))
    poll(world.store, obs(Kind.DOMAIN, "evil.example"), at=world.clock.now())
    assert world.retro.run_once() == []
    assert world.index.count() == 0  # expired by the run


def test_what_counts_as_caught() -> None:
    assert caught(Action.QUARANTINE, Action.DELIVER) and caught(Action.REJECT, Action.TAG)
    assert caught(Action.TAG, Action.DELIVER)
    assert not caught(Action.LOG, Action.DELIVER) and not caught(Action.TAG, Action.HEADER)

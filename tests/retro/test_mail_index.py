"""The mail index: only messages that passed, only what can match (no body), keyed so a new
observable finds its messages by one lookup, and expired after the retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from retro_helpers import Clock, message, obs, open_store, poll

from feedgate.feeds import secrets
from feedgate.feeds.enforced import digest_key
from feedgate.feeds.store import FeedStore
from feedgate.mail.mailindex import MailIndex
from feedgate.mail.matcher import Matcher
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.scanner import Scanner
from feedgate.mail.schema import index_keys, index_messages
from feedgate.observables import Kind

BODY_SECRET = "the quarterly numbers are confidential"


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedStore]:
    s = open_store(str(tmp_path / "feeds.db"), "otx")
    yield s
    s.close()


def scanner_for(store: FeedStore, clock: Clock, index: MailIndex) -> Scanner:
    return Scanner(
        store,
        PolicyStore(store.engine, store.source_names),
        now=clock.now,
        matcher=Matcher(store, clock=clock.tick),
        clock=clock.tick,
        mail_index=index,
    )


def everything_stored(store: FeedStore) -> str:
    with store.engine.connect() as conn:
        rows = [*conn.execute(sa.select(index_messages)), *conn.execute(sa.select(index_keys))]
    return "\n".join(repr(tuple(row)) for row in rows)


def test_only_passed_messages_are_indexed_and_no_body(store: FeedStore) -> None:
    clock = Clock()
    index = MailIndex(store.engine)
    scanner = scanner_for(store, clock, index)
    poll(store, obs(Kind.DOMAIN, "caught.example"), at=clock.now())
    clean = message(
        f"{BODY_SECRET}\nsee http://www.fine.example/a\n",
        subject="Q3",
        sender="Alice <alice@partner.example>",
        message_id="<clean@partner.example>",
    )
    bad = message("http://caught.example/x\n", message_id="<bad@x.example>")
    assert scanner.scan(clean, message="queue-1", client_ip="192.0.2.10").action == "deliver"
    assert scanner.scan(bad, message="queue-2").action == "quarantine"
    assert index.count() == 1

    [indexed] = index.messages([1, 2, 3])
    assert (indexed.name, indexed.message_id, indexed.subject) == (
        "queue-1",
        "<clean@partner.example>",
        "Q3",
    )
    assert indexed.client_ip == "192.0.2.10" and str(indexed.action) == "deliver"
    assert indexed.at == clock.now()
    stored = everything_stored(store)
    assert BODY_SECRET not in stored and "quarterly" not in stored
    assert "caught.example" not in stored  # the quarantined message left nothing
    kept = index.keys_of(indexed.id)
    assert ("url", "url", "http://www.fine.example/a") in kept
    assert ("url", "domain", "www.fine.example") in kept
    assert ("from", "email", "alice@partner.example") in kept
    assert ("client-ip", "ip", "192.0.2.10") in kept


def test_a_host_is_found_under_each_parent_domain_and_an_ip_by_range(store: FeedStore) -> None:
    clock = Clock()
    index = MailIndex(store.engine)
    scanner_for(store, clock, index).scan(
        message("http://a.b.evil.example/\n"), client_ip="203.0.113.9"
    )
    since = clock.now() - timedelta(days=1)
    for parent in ("a.b.evil.example", "b.evil.example", "evil.example"):
        found = index.candidates([digest_key("domain", parent)], [], since=since, before_version=99)
        assert [m.name for m in found] == [None], parent
    assert (
        index.candidates([digest_key("domain", "example")], [], since=since, before_version=99)
        == []
    )
    inside = (
        4,
        int.from_bytes(bytes([203, 0, 113, 0]), "big"),
        int.from_bytes(bytes([203, 0, 113, 255]), "big"),
    )
    outside = (4, inside[1] + 256, inside[2] + 256)
    assert len(index.candidates([], [inside], since=since, before_version=99)) == 1
    assert index.candidates([], [outside], since=since, before_version=99) == []
    # a message scanned at (or after) a version has already been matched against it
    assert index.candidates([], [inside], since=since, before_version=0) == []


def test_messages_expire_after_the_retention(store: FeedStore) -> None:
    clock = Clock()
    index = MailIndex(store.engine, retention=timedelta(days=14))
    scanner = scanner_for(store, clock, index)
    scanner.scan(message("http://old.example/\n"), message="old")
    clock.advance(timedelta(days=2))
    scanner.scan(message("http://new.example/\n"), message="new")
    assert index.expire(clock.now() + timedelta(days=12)) == 0  # old: 14 days, not more
    assert index.expire(clock.now() + timedelta(days=12, seconds=1)) == 1
    assert [m.name for m in index.messages(range(1, 5))] == ["new"]
    assert "old.example" not in everything_stored(store)
    with pytest.raises(ValueError, match="positive"):
        MailIndex(store.engine, retention=timedelta(0))

"""One long-lived Scanner (what the gateway keeps) follows the store and the policy: a poll, a
disabled source, an exception and a new rule change its verdicts without a restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from test_matcher import T0, obs, poll

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.matcher import Matcher
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.scanner import Scanner
from feedgate.observables import Kind


class Clock:
    """A monotonic clock the test moves: the matcher looks at the store's version only when
    its check interval has passed on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FeedStore, PolicyStore, Scanner, Clock]]:
    store = FeedStore(engine(str(tmp_path / "feeds.db")))
    store.add_source(Source(name="otx", hostname="otx.example", collection="user_AV"))
    policy = PolicyStore(store.engine, store.source_names)
    clock = Clock()
    scanner = Scanner(
        store,
        policy,
        matcher=Matcher(store, clock=clock, check_every=1.0),
        clock=clock,
        check_every=1.0,
    )
    yield store, policy, scanner, clock
    store.close()


def message(body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "friend@example.org"
    msg["Subject"] = "hello"
    msg.set_content(body)
    return bytes(msg)


def test_the_scanner_follows_polls_sources_exceptions_and_rules(
    setup: tuple[FeedStore, PolicyStore, Scanner, Clock],
) -> None:
    store, policy, scanner, clock = setup
    raw = message("see http://www.bad.example/login\n")
    assert scanner.scan(raw).action == "deliver"

    poll(store, obs(Kind.DOMAIN, "bad.example", "bad domain"), at=T0)
    assert scanner.scan(raw).action == "deliver"  # within the check interval: the snapshot held
    clock.now += 1.0
    verdict = scanner.scan(raw, message="m1")
    assert verdict.action == "quarantine" and verdict.message == "m1"
    assert [(m.part, m.kind, m.value) for m in verdict.matches] == [
        ("url", "domain", "bad.example")
    ]

    policy.add_rule("reject-domains", kinds=["domain"], action="reject", position=1)
    assert scanner.scan(raw).action == "quarantine"  # within the check interval: the rules held
    clock.now += 1.0
    rejected = scanner.scan(raw)
    assert rejected.action == "reject" and rejected.rules == ("reject-domains", "threat-feeds")
    assert rejected.smtp_reply is not None and rejected.smtp_reply.startswith("550 5.7.1")

    source = store.get_source("otx")
    assert source is not None
    store.update_source(dataclasses.replace(source, enabled=False))
    clock.now += 1.0
    assert scanner.scan(raw).action == "deliver"
    store.update_source(dataclasses.replace(source, enabled=True))
    clock.now += 1.0
    assert scanner.scan(raw).action == "reject"

    policy.add_exception("bad.example", "a partner, checked by hand")
    clock.now += 1.0
    excepted = scanner.scan(raw)
    assert excepted.action == "deliver"
    assert [e.exception for e in excepted.excepted] == ["bad.example"]


def test_the_match_log_counts_what_was_scanned_unless_told_not_to(
    setup: tuple[FeedStore, PolicyStore, Scanner, Clock],
) -> None:
    store, policy, scanner, _clock = setup
    poll(store, obs(Kind.URL, "http://bad.example/x", "bad url"), at=T0)
    raw = message("http://bad.example/x\n")
    scanner.scan(raw)
    scanner.scan(raw)
    quiet = Scanner(store, policy, log=False)
    quiet.scan(raw)
    hits = policy.hits().to_dict()
    assert hits["sources"][0]["source"] == "otx"
    assert hits["sources"][0]["messages"] == 2

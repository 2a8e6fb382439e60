"""QuarantineStore on its own: retention counted on an injected clock, filters, and what a
release needs (a relay known, not twice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feedgate.db import engine
from feedgate.mail.model import Action, Envelope, Match, Part
from feedgate.mail.policy import Verdict
from feedgate.mail.quarantine import QuarantineError, QuarantineNotFound, QuarantineStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def verdict(source: str) -> Verdict:
    match = Match(Part.URL, "domain", "bad.example", "bad.example", source, 1, {})
    return Verdict(None, Action.QUARANTINE, rules=("r",), matches=(match,))


RAW = b"Message-ID: <m1@x>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nbody\r\n"
ENV = Envelope("a@x.test", ("b@y.test",), "192.0.2.1", "helo.test", "q1")


def test_expiry_deletes_what_is_past_retention_on_the_clock(tmp_path: Path) -> None:
    clock = Clock()
    store = QuarantineStore(engine(str(tmp_path / "q.db")), retention=timedelta(days=2), now=clock)
    old = store.add(RAW, ENV, verdict("otx"))
    clock.now += timedelta(days=1)
    new = store.add(RAW, ENV, verdict("partner"))
    assert store.expire() == 0
    clock.now += timedelta(days=1, seconds=1)
    assert store.expire() == 1
    assert [m.id for m in store.list()] == [new]
    with pytest.raises(QuarantineNotFound):
        store.get(old)
    held = store.get(new)
    assert held.subject == "café" and held.message_id == "<m1@x>" and held.envelope == ENV
    assert held.size == len(RAW)


def test_filters_and_release_preconditions(tmp_path: Path) -> None:
    clock = Clock()
    store = QuarantineStore(engine(str(tmp_path / "q.db")), now=clock)
    a = store.add(RAW, ENV, verdict("otx"))
    clock.now += timedelta(hours=2)
    b = store.add(RAW, ENV, verdict("ot"), relay="127.0.0.1:1")
    assert [m.id for m in store.list(source="otx")] == [a]
    assert [m.id for m in store.list(source="ot")] == [b]
    assert [m.id for m in store.list(since=clock.now - timedelta(hours=1))] == [b]
    with pytest.raises(QuarantineError, match="no relay recorded"):
        store.release(a, by="me")
    with pytest.raises(QuarantineError, match="HOST:PORT"):
        store.release(a, by="me", relay="nowhere")
    with pytest.raises(QuarantineError, match="retention"):
        QuarantineStore(store.engine, retention=timedelta(0))

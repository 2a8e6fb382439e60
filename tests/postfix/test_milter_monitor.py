"""A source in monitor mode behind ``feedgate milter`` in a real Postfix: its match changes
nothing at Postfix (delivered, or the enforced source's action alone), and the milter's log
line says what it would have done."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from milter_helpers import MilterProcess, make_store, message, send_all

from feedgate.feeds import secrets
from postfix import PostfixFactory, Sink


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def milter(tmp_path: Path) -> Iterator[MilterProcess]:
    db = tmp_path / "feeds.db"
    store, _policy = make_store(db)
    source = store.get_source("quarfeed")  # its rule, quarantine-rule, quarantines
    assert source is not None
    store.update_source(dataclasses.replace(source, mode="monitor"))
    store.close()
    proc = MilterProcess(db)
    try:
        yield proc
    finally:
        proc.stop()


def test_the_milter_line_says_what_a_monitor_source_would_have_done(
    milter: MilterProcess, postfix_factory: PostfixFactory, sink: Sink
) -> None:
    postfix = postfix_factory(milter=milter.spec)
    both = message("both", "reject.example").replace(
        b"hello,", b"hello, see https://www.quarantine.example/too"
    )
    sent = send_all(
        postfix.port,
        [
            ("watched", message("watched", "quarantine.example")),
            ("clean", message("clean")),
            ("both", both),
        ],
    )
    assert [s.code for s in sent] == [250, 250, 550]  # only the enforced source acted
    delivered = sink.wait_count(2)
    postfix.wait_queue_empty()
    assert sorted(d.header("Subject") or "" for d in delivered) == ["clean", "watched"]
    assert not postfix.queued()
    watched_id = sent[0].reply.decode().rsplit(" ", 1)[-1]
    watched, refused = [x for x in milter.stderr().splitlines() if "would have" in x]
    assert watched.startswith(f"feedgate milter: {watched_id}: client=")
    assert watched.endswith(
        ": deliver; would have: quarantine [quarantine-rule] (source quarfeed, monitor mode)"
    )
    assert refused.endswith(
        ": reject [reject-rule]; would have: quarantine [quarantine-rule] (source quarfeed,"
        " monitor mode)"
    )

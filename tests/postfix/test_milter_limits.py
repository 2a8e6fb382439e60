"""The milter's limits, through a real Postfix: a message over the size limit is refused with
552 unscanned (a 4xx would have the sender retry a message that can never pass), a scan that
overruns its time is tempfailed; either way nothing is delivered or left queued."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from milter_helpers import make_store, message, milter_in_process, send_all

from feedgate.feeds import secrets
from feedgate.mail.milter import no_quarantine
from feedgate.mail.scanner import Scanner
from postfix import PostfixFactory, Sink


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[Scanner]:
    store, policy = make_store(tmp_path / "feeds.db")
    yield Scanner(store, policy)
    store.close()


def big(subject: str, size: int) -> bytes:
    head, body = message(subject).split(b"\r\n\r\n", 1)
    line = b"x" * 76 + b"\r\n"
    return head + b"\r\n\r\n" + body + line * (size // len(line))


def test_a_message_over_the_size_limit_is_refused_with_552(
    scanner: Scanner, postfix_factory: PostfixFactory, sink: Sink
) -> None:
    with milter_in_process(scanner, no_quarantine, max_bytes=100_000) as address:
        postfix = postfix_factory(milter=str(address))
        sent = send_all(
            postfix.port,
            [("small", big("small", 50_000)), ("large", big("large", 200_000))],
        )
        assert (sent[0].code, sent[1].code) == (250, 552)
        assert sent[1].reply == b"5.3.4 Message too big for the threat scan (limit 100000 bytes)"
        (delivered,) = sink.wait_count(1)
        postfix.wait_queue_empty()
    assert delivered.header("Subject") == "small"


def test_a_scan_that_overruns_its_time_is_tempfailed(
    scanner: Scanner, postfix_factory: PostfixFactory, sink: Sink
) -> None:
    # A time limit already passed when the scan starts: the scan can never answer in time.
    with milter_in_process(scanner, no_quarantine, scan_timeout=0.0) as address:
        postfix = postfix_factory(milter=str(address))
        sent = send_all(postfix.port, [("slow", message("slow"))])
        postfix.wait_queue_empty()
    assert (sent[0].code, sent[0].reply) == (451, b"4.7.1 Service unavailable - try again later")
    assert sink.messages == []

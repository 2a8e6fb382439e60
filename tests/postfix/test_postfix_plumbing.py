"""The throw-away Postfix of tests/postfix.py works as the gateway and milter tests need it to:
mail goes through to the sink; with a content filter it goes out to the filter and back in
through the reinjection port (and only once); a filter that is down leaves it deferred in the
queue, and it arrives once the filter is up. The filter here is a bare aiosmtpd pass-through
written for this test (feedgate's gateway has tests of its own)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from postfix import Postfix, PostfixFactory, Sink, free_port, send, wait_for


def message(subject: str, body: str = "hello\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg.as_bytes()


class PassThrough:
    """An SMTP content filter that relays each message to ``relay_port`` with one header
    added (``X-Passed-Filter``), and answers 250 only after the relay took it."""

    def __init__(self, port: int, relay_port: int) -> None:
        self.port = port
        self.relay_port = relay_port
        self.seen = 0
        self._controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        outer = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                import asyncio

                content = b"X-Passed-Filter: yes\r\n" + bytes(envelope.original_content)
                await asyncio.to_thread(
                    outer._relay, envelope.mail_from, list(envelope.rcpt_tos), content
                )
                outer.seen += 1
                return "250 2.0.0 Ok: passed on"

        self._controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, server_hostname="filter.test"
        )
        self._controller.start()

    def _relay(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> None:
        with smtplib.SMTP("127.0.0.1", self.relay_port, timeout=30) as client:
            client.sendmail(mail_from, rcpt_tos, content)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def filter_port() -> int:
    return free_port()


@pytest.fixture
def filtered(postfix_factory: PostfixFactory, filter_port: int) -> Iterator[Postfix]:
    yield postfix_factory(content_filter=filter_port)


def test_mail_goes_through_postfix_to_the_sink(postfix_factory: PostfixFactory, sink: Sink) -> None:
    postfix = postfix_factory()
    code, text = send(postfix.port, "alice@example.org", ["bob@example.net"], message("plain"))
    assert code == 250, text
    (delivered,) = sink.wait_count(1)
    assert delivered.mail_from == "alice@example.org"
    assert delivered.rcpt_tos == ("bob@example.net",)
    assert delivered.header("Subject") == "plain"
    assert delivered.header("Received") is not None  # Postfix's own: it went through Postfix
    postfix.wait_queue_empty()


def test_a_content_filter_sees_each_message_once_and_reinjection_delivers_it(
    filtered: Postfix, filter_port: int, sink: Sink
) -> None:
    passthrough = PassThrough(filter_port, filtered.reinject_port)
    passthrough.start()
    try:
        for n in range(3):
            code, _ = send(filtered.port, "alice@x.example", ["bob@y.example"], message(f"m{n}"))
            assert code == 250
        delivered = sink.wait_count(3)
        filtered.wait_queue_empty()
    finally:
        passthrough.stop()
    assert sorted(d.header("Subject") or "" for d in delivered) == ["m0", "m1", "m2"]
    assert all(d.header("X-Passed-Filter") == "yes" for d in delivered)
    assert passthrough.seen == 3  # the reinjected copy was not filtered again
    assert len(sink.messages) == 3


def test_a_content_filter_that_is_down_leaves_mail_queued_until_it_is_back(
    filtered: Postfix, filter_port: int, sink: Sink
) -> None:
    code, _ = send(filtered.port, "alice@example.org", ["bob@example.net"], message("later"))
    assert code == 250  # Postfix took it: from here on it is Postfix's to keep
    deferred = wait_for(
        "the message to be deferred",
        lambda: [q for q in filtered.queued() if q.queue_name == "deferred"] or None,
    )
    assert len(deferred) == 1 and deferred[0].recipients == ("bob@example.net",)
    assert any("Connection refused" in r for r in deferred[0].reasons)
    assert sink.messages == []

    passthrough = PassThrough(filter_port, filtered.reinject_port)
    passthrough.start()
    try:
        filtered.flush()
        (delivered,) = sink.wait_count(1)
        filtered.wait_queue_empty()
    finally:
        passthrough.stop()
    assert delivered.header("Subject") == "later"
    assert delivered.header("X-Passed-Filter") == "yes"

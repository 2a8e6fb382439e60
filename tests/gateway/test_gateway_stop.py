"""A gateway stopped while it relays a message answers it first, so nothing is sent twice.

The walkthrough found the duplicate: SIGTERM while the relay was taking a message closed the
sender's connection at once; the relay then had the message, the sender (Postfix) had no
reply, kept its copy and sent it again ("message may be sent more than once"). Now the stop
lets a message past its final dot be answered, and closes only idle connections at once.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from gateway_helpers import Bench, Sink, bench, make_store, message

from feedgate.feeds import secrets
from feedgate.mail.gateway import GatewayConfig


class HoldingSink(Sink):
    """A relay that takes each message only when the test lets it (``let_go``)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self._go: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self._loop = asyncio.get_running_loop()
        self._go = asyncio.Event()
        self.arrived.set()
        await self._go.wait()
        return await super().handle_DATA(server, session, envelope)

    def let_go(self) -> None:
        assert self._loop is not None and self._go is not None
        self._loop.call_soon_threadsafe(self._go.set)


@pytest.fixture
def rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Bench, HoldingSink, Path]]:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    db = tmp_path / "feeds.db"
    make_store(db).close()
    with bench() as b:
        yield b, HoldingSink(), db


def test_a_stop_during_the_relay_answers_the_message_and_closes_idle_clients(
    rig: tuple[Bench, HoldingSink, Path],
) -> None:
    b, sink, db = rig
    server, sink_port = b.serve_sink(sink)
    config = GatewayConfig(relay=("127.0.0.1", sink_port), workers=1, scan_timeout=30.0)
    gateway, port, _pids = b.start_gateway(db, config)
    idle = smtplib.SMTP("127.0.0.1", port, timeout=30)
    idle.ehlo("idle.test")
    raw = message(None)

    def send() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.ehlo("client.test")
            smtp.mail("a@sender.test")
            smtp.rcpt("user@rcpt.test")
            return smtp.data(raw)

    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(send)
        assert sink.arrived.wait(30)  # the relay has the message, the client no reply yet
        stopping = asyncio.run_coroutine_threadsafe(gateway.stop(), b.loop)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            idle.noop()  # an idle connection is closed at once, while the message waits
        assert not stopping.done()
        sink.let_go()
        code, _text = sending.result(30)
        stopping.result(30)
    assert code == 250  # the sender hears it went: it will not send it again
    assert [r.raw for r in sink.received] == [raw]
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", port, timeout=5)  # and nothing listens any more
    b.close_server(server)


def test_a_message_still_unanswered_after_the_grace_is_cut_off(
    rig: tuple[Bench, HoldingSink, Path],
) -> None:
    b, sink, db = rig
    server, sink_port = b.serve_sink(sink)
    config = GatewayConfig(relay=("127.0.0.1", sink_port), workers=1, scan_timeout=30.0)
    gateway, port, _pids = b.start_gateway(db, config)

    def send() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.ehlo("client.test")
            smtp.mail("a@sender.test")
            smtp.rcpt("user@rcpt.test")
            return smtp.data(message(None))

    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(send)
        assert sink.arrived.wait(30)
        b.run(gateway.stop(grace=0.2))  # the relay never answers: the stop does not wait on
        with pytest.raises(smtplib.SMTPServerDisconnected):
            sending.result(30)  # no 250: the sender keeps the message and retries
        sink.let_go()
    b.close_server(server)

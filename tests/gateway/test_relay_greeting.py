"""``mail.relay.send`` against a relay that refuses the connection in its greeting: the
message is kept at the sender (451), whatever the greeting's code, and the reply says the
relay refused the connection (not "at DATA": no command was sent)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from feedgate.mail.model import Envelope
from feedgate.mail.relay import send


@contextmanager
def greeting_with(line: str) -> Iterator[int]:
    """A server on a free port that greets each connection with ``line`` and hangs up."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # shut down
            with conn:
                conn.sendall(line.encode() + b"\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(10)


@pytest.mark.parametrize(
    "greeting", ["421 4.3.2 closing for maintenance", "554 5.7.1 no service for you"]
)
def test_a_greeting_refusal_keeps_the_message_at_the_sender(greeting: str) -> None:
    envelope = Envelope(mail_from="a@sender.test", rcpt_tos=("u@rcpt.test",))
    with greeting_with(greeting) as port:
        reply = send("127.0.0.1", port, envelope, b"Subject: hi\r\n\r\nhello\r\n", timeout=10)
    assert reply.code == 451 and not reply.accepted
    assert reply.reply.startswith("451 4.4.0 ")
    assert f"refused the connection: {greeting}" in reply.reply
    assert "DATA" not in reply.reply

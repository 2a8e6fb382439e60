"""``feedgate.mail.maildir_sink``: the delivery sink `feedgate up` relays clean mail to, on its
own. Files appear in new/ whole, byte for byte after Return-Path/Delivered-To, before 250; a
write that fails is 451 and leaves nothing; the envelope cannot forge headers."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from feedgate.mail.maildir_sink import Maildir, MaildirSink, delivery_headers

RAW = b"From: a@example.net\r\nSubject: hi\r\n\r\n.dot first\r\nn\xc3\xa4her  \r\n"


def test_deliver_files_the_bytes_after_the_envelope_headers(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "box")
    name = box.deliver(RAW, "a@example.net", ["x@example.org", "y@example.org"])
    assert (box.new / name).read_bytes() == (
        b"Return-Path: <a@example.net>\r\n"
        b"Delivered-To: x@example.org\r\nDelivered-To: y@example.org\r\n" + RAW
    )
    assert list((box.path / "tmp").iterdir()) == [] and (box.path / "cur").is_dir()
    assert stat.S_IMODE((box.new / name).stat().st_mode) == 0o600
    for folder in (box.path, box.new, box.path / "tmp", box.path / "cur"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_names_are_unique_and_follow_the_maildir_convention(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "box")
    names = {box.deliver(RAW, "a@example.net", ["x@example.org"]) for _ in range(50)}
    assert len(names) == 50 and {p.name for p in box.new.iterdir()} == names
    for name in names:
        seconds, rest = name.split(".", 1)
        assert seconds.isdigit() and rest.startswith("M") and "/" not in name and ":" not in name


def test_the_added_lines_take_the_message_line_ending_and_the_null_sender() -> None:
    assert delivery_headers("", ["x@example.org"], b"\n") == (
        b"Return-Path: <>\nDelivered-To: x@example.org\n"
    )


def test_a_bare_lf_message_gets_lf_headers(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "box")
    raw = b"Subject: unix\n\nbody\n"
    name = box.deliver(raw, "a@example.net", ["x@example.org"])
    assert (box.new / name).read_bytes() == (
        b"Return-Path: <a@example.net>\nDelivered-To: x@example.org\n" + raw
    )


def test_an_envelope_cannot_add_a_header() -> None:
    added = delivery_headers("a@example.net\r\nBcc: victim@example.org", ["x\n@example.org"])
    lines = added.split(b"\r\n")
    assert lines == [
        b"Return-Path: <a@example.netBcc: victim@example.org>",
        b"Delivered-To: x@example.org",
        b"",
    ]


def test_utf8_addresses_are_kept_as_utf8() -> None:
    assert delivery_headers("jörg@exämple.net", ["ü@example.org"]) == (
        "Return-Path: <jörg@exämple.net>\r\nDelivered-To: ü@example.org\r\n".encode()
    )


@dataclass
class Running:
    box: Maildir
    sink: MaildirSink
    port: int
    loop: asyncio.AbstractEventLoop

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sink.stop(), self.loop).result(30)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """The sink served on 127.0.0.1 from a loop in a thread, as `feedgate up` serves it."""
    box = Maildir(tmp_path / "box")
    sink = MaildirSink(box, hostname="sink.test")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    asyncio.run_coroutine_threadsafe(sink.start(sock), loop).result(30)
    try:
        yield Running(box, sink, sock.getsockname()[1], loop)
    finally:
        asyncio.run_coroutine_threadsafe(sink.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def data_reply(port: int, raw: bytes, rcpts: tuple[str, ...] = ("x@example.org",)) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.mail("a@example.net", ["BODY=8BITMIME"])[0] == 250
        for rcpt in rcpts:
            assert smtp.rcpt(rcpt)[0] == 250
        code, text = smtp.data(raw)
        return f"{code} {text.decode()}"


def test_250_comes_once_the_message_is_in_new(running: Running) -> None:
    long_line = b"x" * 20_000  # longer than RFC 5321's 1000: real mail has them
    raw = RAW + long_line + b"\r\n"
    reply = data_reply(running.port, raw, ("x@example.org", "y@example.org"))
    assert reply.startswith("250 2.0.0 Ok: delivered as ")
    name = reply.rsplit(" ", 1)[1]
    assert (running.box.new / name).read_bytes().endswith(b"y@example.org\r\n" + raw)
    assert running.sink.handler.delivered == 1


def test_a_write_that_fails_is_451_and_leaves_nothing(running: Running) -> None:
    new = running.box.new
    new.rmdir()
    new.write_text("not a folder: no rename into it can work, for root too\n")
    reply = data_reply(running.port, RAW)
    assert reply.startswith("451 4.3.0 Maildir write failed"), reply
    assert list((running.box.path / "tmp").iterdir()) == []
    assert running.sink.handler.delivered == 0
    new.unlink()
    new.mkdir()
    assert data_reply(running.port, RAW).startswith("250 ")  # the sender's retry is delivered
    assert len(list(new.iterdir())) == 1


def test_stop_lets_a_connected_client_go(running: Running) -> None:
    client = smtplib.SMTP("127.0.0.1", running.port, timeout=30)
    client.ehlo()
    running.stop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    client.close()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", running.port)) != 0

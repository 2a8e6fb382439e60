"""``feedgate.mail.gateway_thread.GatewayThread``: the gateway and the Maildir sink on a loop
in a thread, as `feedgate up` runs them beside its API. Started from a thread, the spawned
scanning workers work; stopped, the workers are gone, the ports closed and a client left
connected is let go, all while the process still runs."""

from __future__ import annotations

import os
import smtplib
import socket
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from up_helpers import alive, spawned_children

from feedgate.db import engine
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.gateway import Gateway, GatewayConfig
from feedgate.mail.gateway_thread import GatewayThread
from feedgate.mail.maildir_sink import Maildir, MaildirSink
from feedgate.mail.maillog import MailLog
from feedgate.mail.quarantine import QuarantineStore
from feedgate.observables import Kind, LayeredContext, Observable

BAD = "phish.example"


def make_store(path: Path) -> FeedStore:
    """A store whose one source lists ``BAD``; the default rule quarantines what matches."""
    store = FeedStore(engine(str(path)))
    store.add_source(Source(name="feed", hostname="otx.example", collection="c"))
    seen = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    context = LayeredContext({"package_id": "p-1", "package_title": "phish"}, {})
    with store.segment("feed") as seg:
        seg.upsert([Observable(Kind.DOMAIN, BAD, None, context)], seen)
        seg.finish(seen)
    return store


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def message(link: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "friend@example.net"
    msg["To"] = "alice@example.org"
    msg["Subject"] = "hello"
    msg.set_content(f"Hi,\n{link}\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_gateway_and_sink_run_in_a_thread_and_stop_without_leftovers(tmp_path: Path) -> None:
    db = tmp_path / "feeds.db"
    store = make_store(db)
    quarantine = QuarantineStore(store.engine)
    maildir = Maildir(tmp_path / "mail")
    sink_sock, sock = listening(), listening()
    sink_port, port = sink_sock.getsockname()[1], sock.getsockname()[1]
    mail_log = MailLog(tmp_path / "mail.log")
    gateway = Gateway(
        str(db), GatewayConfig(relay=("127.0.0.1", sink_port), workers=1), quarantine, mail_log
    )
    thread = GatewayThread(gateway, sock, sink=MaildirSink(maildir), sink_sock=sink_sock)
    try:
        (worker,) = thread.start(timeout=120)
        assert thread.running and spawned_children(os.getpid()) == [worker]
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            assert smtp.sendmail("friend@example.net", ["alice@example.org"], message("hi")) == {}
            assert (
                smtp.sendmail(
                    "friend@example.net", ["alice@example.org"], message(f"http://{BAD}/login")
                )
                == {}
            )
        (filed,) = maildir.new.iterdir()
        assert filed.read_bytes().endswith(message("hi"))
        (held,) = quarantine.list()
        assert held.subject == "hello" and [m["value"] for m in held.matches] == [BAD]

        idle = smtplib.SMTP("127.0.0.1", port, timeout=60)  # connected, never says QUIT
        idle.ehlo()
    finally:
        thread.stop()
        mail_log.close()
    assert not alive(worker) and not thread.running
    assert refused(port) and refused(sink_port)
    assert sock.fileno() == -1 and sink_sock.fileno() == -1
    with pytest.raises(smtplib.SMTPServerDisconnected):
        idle.noop()
    idle.close()
    thread.stop()  # a second stop is harmless


def test_a_gateway_that_cannot_start_is_cleaned_up(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    db = tmp_path / "feeds.db"
    quarantine = QuarantineStore(make_store(db).engine)
    sock = listening()
    port = sock.getsockname()[1]
    # The workers open a database no one can make (under a regular file): start fails.
    gateway = Gateway(
        str(blocker / "sub" / "feeds.db"),
        GatewayConfig(relay=("127.0.0.1", 1), workers=1),
        quarantine,
    )
    thread = GatewayThread(gateway, sock)
    with pytest.raises(Exception):  # noqa: B017 - whatever the pool raises, start says it
        thread.start(timeout=120)
    assert sock.fileno() == -1 and refused(port)
    assert not thread.running and spawned_children(os.getpid()) == []


def test_a_sink_needs_its_socket(tmp_path: Path) -> None:
    store = make_store(tmp_path / "feeds.db")
    gateway = Gateway(
        str(tmp_path / "feeds.db"),
        GatewayConfig(relay=("127.0.0.1", 1), workers=1),
        QuarantineStore(store.engine),
    )
    with pytest.raises(ValueError, match="socket"):
        GatewayThread(gateway, listening(), sink=MaildirSink(Maildir(tmp_path / "m")))

"""``feedgate gateway`` behind a real Postfix as its after-queue ``content_filter``: Postfix
hands each message to the gateway, which relays it to Postfix's reinjection port (or keeps,
drops or refuses it), and Postfix delivers to the sink. Every message is counted: at the
sink, in feedgate's quarantine, dropped, or bounced by Postfix for the gateway's 550; nothing
stays in Postfix's queue."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from milter_helpers import FEEDS, PREFIX, ROOT, make_store, message, send_all

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.mail.quarantine import QuarantineStore
from postfix import PostfixFactory, Sink, free_port, wait_for


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def gateway_db(tmp_path: Path) -> Path:
    db = tmp_path / "feeds.db"
    store, _policy = make_store(db)
    store.close()
    return db


def start_gateway(db: Path, port: int, relay_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "XDG_DATA_HOME": str(db.parent / "xdg"),
    }
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "feedgate.cli", "gateway", "--db", str(db), "--workers", "1"),
            *("--listen", f"127.0.0.1:{port}", "--relay", f"127.0.0.1:{relay_port}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline().decode()
            if line.startswith("gateway:"):
                return proc
            if not line:
                break
    proc.kill()
    raise AssertionError("feedgate gateway did not start")


@pytest.fixture
def gateway_behind_postfix(
    gateway_db: Path, postfix_factory: PostfixFactory
) -> Iterator[tuple[Path, object]]:
    port = free_port()
    postfix = postfix_factory(content_filter=port)
    proc = start_gateway(gateway_db, port, postfix.reinject_port)
    try:
        yield gateway_db, postfix
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_each_verdict_behind_postfix_and_no_message_is_lost(
    gateway_behind_postfix: tuple[Path, object], sink: Sink
) -> None:
    db, postfix = gateway_behind_postfix
    sent = send_all(
        postfix.port,  # type: ignore[attr-defined]
        [
            ("clean", message("clean")),
            ("tagged", message("tagged", FEEDS["tagfeed"][1])),
            ("headed", message("headed", FEEDS["hdrfeed"][1])),
            ("rejected", message("rejected", FEEDS["rejectfeed"][1])),
            ("dropped", message("dropped", FEEDS["dropfeed"][1])),
            ("quarantined", message("quarantined", FEEDS["quarfeed"][1])),
        ],
    )
    assert [s.code for s in sent] == [250] * 6  # after queue: Postfix took them all
    # Delivered: the three that pass, and Postfix's bounce of the rejected one to its sender.
    delivered = sink.wait_count(4)
    postfix.wait_queue_empty()  # type: ignore[attr-defined]
    bounced = "Undelivered Mail Returned to Sender"
    subjects = sorted(d.header("Subject") or "" for d in delivered)
    assert subjects == sorted(["clean", f"{PREFIX} tagged", "headed", bounced])
    [bounce] = [d for d in delivered if d.header("Subject") == bounced]
    assert bounce.rcpt_tos == ("alice@example.org",)
    assert b"5.7.1" in bounce.content and b"rejected" in bounce.content
    headed = next(d for d in delivered if d.header("Subject") == "headed")
    assert headed.header("X-Feedgate-Threat") is not None
    [kept] = QuarantineStore(engine(str(db))).list()
    assert kept.subject == "quarantined" and kept.envelope.rcpt_tos == ("bob@example.net",)
    # dropped: neither delivered nor kept, and nothing waits in Postfix's queue
    assert not postfix.queued()  # type: ignore[attr-defined]
    wait_for("the sink to hold nothing more", lambda: len(sink.messages) == 4 or None)

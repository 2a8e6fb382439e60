"""feedgate's milter inside a real Postfix (``smtpd_milters``), mail sent with smtplib: each
verdict does what it says at Postfix, and no message is lost. Every message sent is counted
once: at the sink, refused (the sender holds it: 5xx bounced by the sender, 4xx retried),
discarded on the milter's word (Postfix's log) or kept in the quarantine, and Postfix's queue
is empty at the end.

The milter runs as a real ``feedgate milter`` process on a real FeedStore; the quarantine
tests run it in this process, with a quarantine callable that keeps messages in a dict (the
real QuarantineStore is the gateway's, wired by the CLI later). A message the real milter
quarantined is released with ``feedgate quarantine release`` to the README's release port (an
smtpd without milters, ``feedgate milter --relay``): delivered once, not quarantined again."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from milter_helpers import (
    PREFIX,
    ROOT,
    MilterProcess,
    Sent,
    discarded_ids,
    make_store,
    message,
    milter_in_process,
    send_all,
)

from feedgate.cli import main
from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.store import FeedStore
from feedgate.mail.model import Envelope
from feedgate.mail.policy import Verdict
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.quarantine import QuarantineStore
from feedgate.mail.scanner import Scanner
from postfix import Postfix, PostfixFactory, Sink, free_port, wait_for


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def feeds(tmp_path: Path) -> Iterator[tuple[Path, FeedStore, PolicyStore]]:
    db = tmp_path / "feeds.db"
    store, policy = make_store(db)
    yield db, store, policy
    store.close()


@pytest.fixture
def milter_process(
    feeds: tuple[Path, FeedStore, PolicyStore], postfix_factory: PostfixFactory
) -> Iterator[MilterProcess]:
    proc = MilterProcess(feeds[0])
    try:
        yield proc
    finally:
        proc.stop()


def queue_ids(sent: list[Sent]) -> dict[str, str]:
    """subject -> the queue id Postfix named in its 250."""
    return {s.subject: s.reply.decode().rsplit(" ", 1)[-1] for s in sent if s.code == 250}


def account(sent: list[Sent], sink: Sink, postfix: Postfix, kept: int = 0) -> dict[str, list[str]]:
    """Where each sent message went; asserts that it went exactly one place."""
    ids = queue_ids(sent)
    postfix.wait_queue_empty()
    accepted = [s.subject for s in sent if s.code == 250]
    discarded = set(discarded_ids(postfix.log_lines))
    dropped = [subject for subject, qid in ids.items() if qid in discarded]
    delivered = sink.wait_count(len(accepted) - len(dropped) - kept)
    where = {
        "delivered": sorted(d.header("Subject") or "" for d in delivered),
        "rejected": sorted(s.subject for s in sent if 500 <= s.code < 600),
        "tempfailed": sorted(s.subject for s in sent if 400 <= s.code < 500),
        "discarded": sorted(dropped),
    }
    counted = sum(len(v) for v in where.values())
    assert counted == len(sent), where  # none lost, none counted twice
    assert not postfix.queued()
    return where


def test_each_verdict_acts_at_postfix_and_no_message_is_lost(
    milter_process: MilterProcess, postfix_factory: PostfixFactory, sink: Sink
) -> None:
    postfix = postfix_factory(milter=milter_process.spec)
    sent = send_all(
        postfix.port,
        [
            ("clean", message("clean")),
            ("tagged", message("tagged", "tag.example")),
            ("headed", message("headed", "header.example", X_Feedgate_Threat="all clear")),
            ("rejected", message("rejected", "reject.example")),
            ("dropped", message("dropped", "drop.example")),
            ("quarantined", message("quarantined", "quarantine.example")),
            ("clean again", message("clean again")),
        ],
    )
    codes = {s.subject: (s.code, s.reply.decode()) for s in sent}
    assert codes["rejected"] == (
        550,
        "5.7.1 Message refused: a domain listed by threat feed rejectfeed",
    )
    # The CLI's milter keeps a quarantined message in feedgate's quarantine, then Postfix
    # discards its copy.
    assert {s for s, (code, _) in codes.items() if code == 250} == {
        "clean",
        "clean again",
        "tagged",
        "headed",
        "dropped",
        "quarantined",
    }

    where = account(sent, sink, postfix)
    assert where == {
        "delivered": sorted(["clean", "clean again", f"{PREFIX} tagged", "headed"]),
        "rejected": ["rejected"],
        "tempfailed": [],
        "discarded": ["dropped", "quarantined"],
    }
    [kept] = QuarantineStore(engine(str(milter_process.db))).list()
    assert kept.subject == "quarantined"
    assert kept.envelope.rcpt_tos
    by_subject = {d.header("Subject"): d for d in sink.messages}
    headed = by_subject["headed"]
    assert headed.message.get_all("X-Feedgate-Threat") == ["hdrfeed domain header.example"]
    assert by_subject["clean"].header("X-Feedgate-Threat") is None
    # The body is what the client sent, byte for byte, whatever the headers went through.
    for subject in ("clean", f"{PREFIX} tagged", "headed"):
        body = by_subject[subject].content.split(b"\r\n\r\n", 1)[1]
        original = dict(
            clean=message("clean"),
            tagged=message("tagged", "tag.example"),
            headed=message("headed", "header.example"),
        )[subject.removeprefix(f"{PREFIX} ")]
        assert body == original.split(b"\r\n\r\n", 1)[1]
    stderr = milter_process.stderr()
    assert ": reject [reject-rule]" in stderr and ": drop [drop-rule]" in stderr


def test_a_rule_change_reaches_the_running_milter(
    milter_process: MilterProcess,
    postfix_factory: PostfixFactory,
    sink: Sink,
    feeds: tuple[Path, FeedStore, PolicyStore],
) -> None:
    postfix = postfix_factory(milter=milter_process.spec)
    first = send_all(postfix.port, [("before", message("before", "reject.example"))])
    assert first[0].code == 550

    _db, _store, policy = feeds
    policy.add_exception("reject.example", "a partner, checked by hand")
    sent: list[Sent] = list(first)

    def delivered_once() -> bool:
        # Within the scanner's check interval (a second) the old rules still hold: each try
        # is a message of its own, counted like the others.
        sent.extend(
            send_all(postfix.port, [(f"after {len(sent)}", message("x", "reject.example"))])
        )
        return sent[-1].code == 250

    wait_for("the exception to reach the milter", delivered_once, timeout=15, every=0.2)
    assert all(s.code == 550 for s in sent[:-1])
    sink.wait_count(1)
    postfix.wait_queue_empty()
    assert len(sink.messages) == 1


class Kept:
    """A quarantine that keeps messages in memory: what the milter's injected callable gets."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.messages: dict[str, tuple[bytes, Envelope, Verdict]] = {}
        self._lock = threading.Lock()

    def __call__(self, raw: bytes, envelope: Envelope, verdict: Verdict) -> str:
        if self.fail:
            raise OSError("the quarantine's disk is full")
        with self._lock:
            ident = f"q{len(self.messages) + 1}"
            self.messages[ident] = (raw, envelope, verdict)
            return ident


def test_quarantine_keeps_the_message_as_received_then_discards_it(
    feeds: tuple[Path, FeedStore, PolicyStore], postfix_factory: PostfixFactory, sink: Sink
) -> None:
    _db, store, policy = feeds
    kept = Kept()
    with milter_in_process(Scanner(store, policy), kept) as address:
        postfix = postfix_factory(milter=str(address))
        original = message("quarantined", "quarantine.example")
        sent = send_all(postfix.port, [("quarantined", original), ("clean", message("clean"))])
        assert [s.code for s in sent] == [250, 250]
        where = account(sent, sink, postfix, kept=1)
    assert where["delivered"] == ["clean"]
    assert where["discarded"] == ["quarantined"]  # Postfix keeps no copy: feedgate's is it
    ((raw, envelope, verdict),) = kept.messages.values()
    assert envelope.mail_from == "alice@example.org"
    assert envelope.rcpt_tos == ("bob@example.net",)
    assert envelope.client_ip == "127.0.0.1"
    assert envelope.helo == "client.feedgate.test"
    assert envelope.queue_id == queue_ids(sent)["quarantined"]
    assert verdict.action == "quarantine" and verdict.rules == ("quarantine-rule",)
    # The message as the client sent it (Postfix adds a Date header it lacked), CRLF lines.
    head, body = raw.split(b"\r\n\r\n", 1)
    assert body == original.split(b"\r\n\r\n", 1)[1]
    assert head.startswith(original.split(b"\r\n\r\n", 1)[0] + b"\r\nDate: ")


def test_a_quarantine_that_fails_tempfails_and_keeps_nothing(
    feeds: tuple[Path, FeedStore, PolicyStore], postfix_factory: PostfixFactory, sink: Sink
) -> None:
    _db, store, policy = feeds
    with milter_in_process(Scanner(store, policy), Kept(fail=True)) as address:
        postfix = postfix_factory(milter=str(address))
        sent = send_all(postfix.port, [("quarantined", message("q", "quarantine.example"))])
        assert sent[0].code == 451
        assert account(sent, sink, postfix)["tempfailed"] == ["quarantined"]


def test_a_milter_that_is_down_makes_postfix_tempfail_and_keep_nothing(
    postfix_factory: PostfixFactory, sink: Sink
) -> None:
    postfix = postfix_factory(milter=f"inet:127.0.0.1:{free_port()}")
    sent = send_all(postfix.port, [("one", message("one")), ("two", message("two"))])
    assert [(s.code, s.reply) for s in sent] == [
        (451, b"4.7.1 Service unavailable - try again later")
    ] * 2
    assert account(sent, sink, postfix) == {
        "delivered": [],
        "rejected": [],
        "tempfailed": ["one", "two"],
        "discarded": [],
    }


def smtp_without_helo(port: int, raw: bytes) -> list[bytes]:
    """One message over a bare socket with no HELO/EHLO at all (smtplib always sends one);
    each reply's first line."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        stream = sock.makefile("rwb")

        def reply() -> bytes:
            line = stream.readline()
            while line[3:4] == b"-":
                line = stream.readline()
            replies.append(line.rstrip())
            return line

        reply()
        for command in (b"MAIL FROM:<alice@example.org>", b"RCPT TO:<bob@example.net>", b"DATA"):
            stream.write(command + b"\r\n")
            stream.flush()
            reply()
        stream.write(raw + b".\r\n")
        stream.flush()
        reply()
        stream.write(b"QUIT\r\n")
        stream.flush()
        reply()
    return replies


def test_a_client_that_never_says_helo_is_scanned_all_the_same(
    feeds: tuple[Path, FeedStore, PolicyStore], postfix_factory: PostfixFactory, sink: Sink
) -> None:
    _db, store, policy = feeds
    kept = Kept()
    with milter_in_process(Scanner(store, policy), kept) as address:
        postfix = postfix_factory(milter=str(address))
        replies = smtp_without_helo(postfix.port, message("no helo", "quarantine.example"))
        postfix.wait_queue_empty()
    assert [r[:3] for r in replies] == [b"220", b"250", b"250", b"354", b"250", b"221"]
    ((_raw, envelope, verdict),) = kept.messages.values()
    assert envelope.helo is None and envelope.mail_from == "alice@example.org"
    assert verdict.action == "quarantine"
    assert sink.messages == []


def test_a_released_message_goes_through_the_release_port_once_and_is_not_held_again(
    feeds: tuple[Path, FeedStore, PolicyStore], postfix_factory: PostfixFactory, sink: Sink
) -> None:
    """README "Enforce on live mail": `feedgate milter --relay 127.0.0.1:PORT` and that port in
    master.cf with `-o smtpd_milters=`. The release is delivered once at the sink and not
    quarantined again; released to the port that runs the milter instead, the same message
    would be scanned again and held as a new id while the release says "released" (what the
    README warns of)."""
    from click.testing import CliRunner

    db = feeds[0]
    release_port = free_port()
    milter = MilterProcess(db, extra=("--relay", f"127.0.0.1:{release_port}"))
    try:
        postfix = postfix_factory(milter=milter.spec, release_port=release_port)
        served = postfix.master_cf().replace(str(release_port), "10027").splitlines()[-4:]
        assert readme_release_port() == [" ".join(line.split()) for line in served]  # the same
        first = message("held", "quarantine.example")
        second = message("again", "quarantine.example")
        sent = send_all(
            postfix.port, [("held", first), ("again", second), ("clean", message("clean"))]
        )
        assert account(sent, sink, postfix)["discarded"] == ["again", "held"]
        quarantine = QuarantineStore(engine(str(db)))
        held = {m.subject: m for m in quarantine.list()}
        assert set(held) == {"held", "again"}
        assert {(m.relay, m.relay_tls) for m in held.values()} == {
            (f"127.0.0.1:{release_port}", "may")
        }
        runner = CliRunner()
        ident = held["held"].id
        done = runner.invoke(main, ["quarantine", "release", ident, "--db", str(db)])
        assert done.exit_code == 0, done.output
        assert done.output == f"released {ident} to 1 recipient\n"
        delivered = sink.wait_count(2)
        postfix.wait_queue_empty()
        assert sorted(d.header("Subject") or "" for d in sink.messages) == ["clean", "held"]
        [out] = [d for d in delivered if d.header("Subject") == "held"]
        assert out.rcpt_tos == ("bob@example.net",)
        assert out.content.endswith(first.split(b"\r\n\r\n", 1)[1])  # the body, byte for byte
        assert [m.subject for m in quarantine.list()] == ["again"]  # nothing new held
        assert quarantine.get(ident).released_at is not None

        # The trap: the milter's own port scans it again and keeps it as another id.
        trap = runner.invoke(
            main,
            ["quarantine", "release", held["again"].id, "--relay", f"127.0.0.1:{postfix.port}",
             "--db", str(db)],
        )  # fmt: skip
        assert trap.exit_code == 0, trap.output
        postfix.wait_queue_empty()
        [anew] = quarantine.list()  # committed before the milter let Postfix answer 250
        assert anew.subject == "again" and anew.id != held["again"].id
        assert sorted(d.header("Subject") or "" for d in sink.messages) == ["clean", "held"]
        quarantine.engine.dispose()
    finally:
        milter.stop()


def readme_release_port() -> list[str]:
    """The README's master.cf lines of the milter's release port (spaces normalised), after
    checking it tells the milter of that port."""
    readme = (ROOT / "README.md").read_text()
    told = "feedgate milter --listen inet:127.0.0.1:11332 --relay 127.0.0.1:10027"
    assert told in " ".join(readme.split())
    start = "127.0.0.1:10027 inet"
    block = start + readme.split(f"\n{start}", 1)[1].split("```", 1)[0]
    return [" ".join(line.split()) for line in block.splitlines() if line.strip()]

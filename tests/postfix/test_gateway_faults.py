"""``feedgate gateway`` as Postfix's ``content_filter`` when things go wrong (issue 13, section 5:
faults). A real Postfix, the real gateway process, a sink behind Postfix's reinjection port, and
one fault each: the gateway's relay down or refusing, the gateway down, the gateway killed with
SIGKILL in the middle of a message, a 60 MB message and one over the gateway's limit, 1,000
recipients, a client that stops in the middle of DATA, a scan that fails.

Every test ends with the ledger (:func:`fault_helpers.ledger`): each message the client handed
to Postfix is exactly once at the sink, in the quarantine, bounced to its sender, or in Postfix's
queue; nothing is anywhere else. Postfix here retries only when the test flushes its queue
(:data:`fault_helpers.PATIENT`), so "the message stays queued" is a state the test looks at.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fault_helpers import (
    PATIENT,
    GatewayProcess,
    Ledger,
    Proxy,
    after_received,
    big_message,
    deferred,
    ledger,
    mail,
    message_id,
    queue_files,
)
from milter_helpers import FEEDS, PREFIX, make_store

from feedgate.feeds import secrets
from feedgate.mail.limits import MAX_MESSAGE_BYTES, MiB
from peers import require
from postfix import (
    Postfix,
    PostfixFactory,
    PostfixUnavailable,
    Sink,
    free_port,
    send,
    start_postfix,
    unavailable_reason,
    wait_for,
)

SENDER = "alice@example.org"
RCPT = "bob@example.net"


@pytest.fixture(scope="module", autouse=True)
def secret_key() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:  # the gateway processes inherit it
        mp.setenv(secrets.KEY_ENV, secrets.generate_key())
        yield


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.db"
    make_store(path)[0].close()
    return path


@dataclass
class Rig:
    """One Postfix with the gateway as its content filter, the sink it delivers to, the
    gateway's database (its quarantine)."""

    postfix: Postfix
    sink: Sink
    db: Path
    gateway: GatewayProcess

    def send(self, raw: bytes, rcpts: list[str] | None = None) -> tuple[int, bytes]:
        return send(self.postfix.port, SENDER, rcpts or [RCPT], raw, timeout=120)

    def ledger(self) -> Ledger:
        return ledger(self.postfix, self.sink, self.db)

    def settled(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` messages are at the sink and Postfix's queue is empty (then
        nothing is in flight: a message the gateway is taking is in the active queue)."""
        self.sink.wait_count(count, timeout)
        self.postfix.wait_queue_empty(timeout)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One instance for the faults that leave it as they found it (an empty queue, a gateway
    that runs): the big messages, the many recipients, the client that stops."""
    reason = unavailable_reason()
    if reason is not None:
        require(reason)
    path = tmp_path_factory.mktemp("shared") / "feeds.db"
    make_store(path)[0].close()
    sink = Sink()
    sink.start()
    port = free_port()
    try:
        try:
            postfix = start_postfix(sink.port, content_filter=port, main_extra=PATIENT)
        except PostfixUnavailable as exc:
            pytest.fail(f"cannot start Postfix: {exc}", pytrace=False)
        try:
            gateway = GatewayProcess(path, port, postfix.reinject_port).start()
            try:
                yield Rig(postfix, sink, path, gateway)
            finally:
                gateway.stop()
        finally:
            postfix.stop()
            shutil.rmtree(postfix.root, ignore_errors=True)
    finally:
        sink.stop()


@pytest.fixture
def rig(shared: Rig) -> Rig:
    """The shared instance, its sink emptied, its queue checked empty."""
    assert not shared.postfix.queued(), "a test before left mail in the shared queue"
    shared.sink.clear()
    return shared


# --- the next hop, the gateway, down ------------------------------------------------------


def test_relay_down_or_refusing_keeps_mail_in_postfix_until_it_is_back(
    db: Path, sink: Sink, postfix_factory: PostfixFactory
) -> None:
    port = free_port()
    postfix = postfix_factory(content_filter=port, main_extra=PATIENT)
    relay = Proxy(postfix.reinject_port)  # down: connections to it are refused
    gateway = GatewayProcess(db, port, relay.port).start()
    try:
        sent = {
            "clean": mail("relay down clean"),
            "tagged": mail("relay down tagged", FEEDS["tagfeed"][1]),
            "headed": mail("relay down headed", FEEDS["hdrfeed"][1]),
            "quarantined": mail("relay down quarantined", FEEDS["quarfeed"][1]),
        }
        rig = Rig(postfix, sink, db, gateway)
        for raw in sent.values():
            assert rig.send(raw)[0] == 250  # after queue: Postfix has it
        # The gateway cannot hand three of them on: 451, and Postfix keeps them. The
        # quarantined one needs no relay: the quarantine has it.
        queued = deferred(postfix, 3, "451 4.4.1", "unreachable: Connection refused")
        ids = {name: message_id(raw) for name, raw in sent.items()}
        assert sorted(postfix.message_id(q.queue_id) or "" for q in queued) == sorted(
            ids[n] for n in ("clean", "tagged", "headed")
        )
        actions = sorted(line["action"] for line in gateway.log_lines())
        assert actions == ["quarantine", "tempfail", "tempfail", "tempfail"]
        # Now the relay answers but refuses the connection, for now (421) or, misconfigured,
        # for good (554): a greeting says nothing of the message, so 451 and still queued.
        for greeting in (
            "421 4.3.2 relay.test closing for maintenance",
            "554 5.7.1 relay.test: no service for you",
        ):
            relay.refuse(greeting.encode() + b"\r\n")
            postfix.flush()
            deferred(postfix, 3, "451 4.4.0", f"refused the connection: {greeting}")
        assert sink.messages == []
        # Back: one flush, and each arrives once.
        relay.forward()
        postfix.flush()
        rig.settled(3)
        book = rig.ledger()
        book.assert_each_once(
            {
                ids["clean"]: "delivered",
                ids["tagged"]: "delivered",
                ids["headed"]: "delivered",
                ids["quarantined"]: "quarantined",
            }
        )
        subjects = sorted(d.header("Subject") or "" for d in sink.messages)
        assert subjects == sorted(
            ["relay down clean", f"{PREFIX} relay down tagged", "relay down headed"]
        )
        delivered = {d.header("Message-ID"): d for d in sink.messages}
        assert after_received(delivered[ids["clean"]].content) == sent["clean"]
    finally:
        gateway.stop()
        relay.close()


def test_gateway_down_postfix_keeps_mail_until_it_listens(
    db: Path, sink: Sink, postfix_factory: PostfixFactory
) -> None:
    port = free_port()  # the content filter's port: nothing listens there yet
    postfix = postfix_factory(content_filter=port, main_extra=PATIENT)
    rig = Rig(postfix, sink, db, GatewayProcess(db, port, postfix.reinject_port))
    sent = [mail(f"gateway down {n}") for n in range(3)]
    for raw in sent:
        assert rig.send(raw)[0] == 250
    deferred(postfix, 3, "Connection refused")
    rig.gateway.start()
    try:
        postfix.flush()
        rig.settled(3)
        rig.ledger().assert_each_once({message_id(raw): "delivered" for raw in sent})
        assert sorted(after_received(d.content) for d in sink.messages) == sorted(sent)
    finally:
        rig.gateway.stop()


def test_gateway_killed_mid_data_postfix_retries_and_the_message_arrives_once(
    db: Path, sink: Sink, postfix_factory: PostfixFactory
) -> None:
    port = free_port()
    # Postfix -> proxy -> gateway: the proxy stops passing the message on after 1 MiB of it,
    # so the gateway is in DATA (it said 354) and cannot have the whole message when killed;
    # Postfix is still sending it (8 MiB do not fit in the sockets' buffers).
    front = Proxy(port)
    front.forward()
    front.hold_after(1 * MiB)
    postfix = postfix_factory(content_filter=front.port, main_extra=PATIENT)
    gateway = GatewayProcess(db, port, postfix.reinject_port).start()
    rig = Rig(postfix, sink, db, gateway)
    try:
        raw = big_message("killed mid data", 8 * MiB)
        assert rig.send(raw)[0] == 250
        assert front.held.wait(60), "Postfix never got 1 MiB into the message"
        assert b"\r\n354 " in front.held_replies  # the gateway's session is in DATA
        assert gateway.workers(), "the gateway has no workers to kill"
        gateway.kill()  # kill -9 of the gateway and its workers
        [entry] = deferred(postfix, 1, "lost connection", "while sending message body")
        assert postfix.message_id(entry.queue_id) == message_id(raw)
        assert gateway.log_lines() == []  # the killed gateway answered nothing
        front.release()
        gateway.start()  # on the same port, as a supervisor would
        postfix.flush()
        rig.settled(1)
        rig.ledger().assert_each_once({message_id(raw): "delivered"})
        [delivered] = sink.messages
        assert _sha(after_received(delivered.content)) == _sha(raw)
        assert [line["action"] for line in gateway.log_lines()] == ["deliver"]
    finally:
        gateway.stop()
        front.close()


# --- big messages, many recipients, a client that stops -----------------------------------


def test_a_60_mb_message_is_delivered_byte_for_byte(rig: Rig) -> None:
    raw = big_message("sixty megabytes", 60 * MiB)
    assert len(raw) < MAX_MESSAGE_BYTES
    code, _text = rig.send(raw)
    assert code == 250
    rig.settled(1, timeout=180)
    [delivered] = rig.sink.messages
    assert _sha(after_received(delivered.content)) == _sha(raw)
    assert delivered.rcpt_tos == (RCPT,)
    rig.ledger().assert_each_once({message_id(raw): "delivered"})
    assert rig.gateway.log_lines()[-1]["action"] == "deliver"


def test_a_message_over_the_gateways_limit_is_bounced_to_its_sender(rig: Rig) -> None:
    """Postfix takes it (its own limit is higher), the gateway's EHLO announces SIZE, Postfix
    does not send what will not fit: it bounces the message to its sender, saying why."""
    raw = big_message("over the gateway limit", MAX_MESSAGE_BYTES + 1 * MiB)
    assert len(raw) < int(rig.postfix.main_cf()["message_size_limit"])
    logged = len(rig.gateway.log_lines())
    assert rig.send(raw)[0] == 250
    rig.settled(1, timeout=120)
    rig.ledger().assert_each_once({message_id(raw): "bounced"})
    [bounce] = rig.sink.messages
    assert bounce.rcpt_tos == (SENDER,)
    assert b"Status: 5.3.4" in bounce.content
    assert f"exceeds size limit {MAX_MESSAGE_BYTES} of server".encode() in bounce.content
    assert len(bounce.content) < 1 * MiB  # the bounce returns headers, not 65 MB
    assert len(rig.gateway.log_lines()) == logged  # refused before DATA: nothing scanned


def test_a_thousand_recipients_each_get_the_message_once(rig: Rig) -> None:
    rcpts = [f"user{n:04d}@rcpt{n % 7}.test" for n in range(1000)]
    raw = mail("a thousand recipients")
    logged = len(rig.gateway.log_lines())
    assert rig.send(raw, rcpts)[0] == 250

    def deliveries() -> int | None:
        total = sum(len(d.rcpt_tos) for d in rig.sink.messages)
        return total if total >= len(rcpts) else None

    wait_for("1,000 recipient-deliveries at the sink", deliveries, timeout=60)
    rig.postfix.wait_queue_empty()
    book = rig.ledger()
    ident = message_id(raw)
    assert book.recipients == {(ident, rcpt): 1 for rcpt in rcpts}  # each once, no other
    assert not (book.bounced or book.quarantined or book.queued or book.unknown)
    assert {after_received(d.content) for d in rig.sink.messages} == {raw}
    # However Postfix split them, the gateway answered for each recipient once.
    lines = rig.gateway.log_lines()[logged:]
    assert {line["action"] for line in lines} == {"deliver"}
    assert sum(int(line["recipients"]) for line in lines) == len(rcpts)


def test_a_client_that_stops_mid_data_leaves_nothing_and_the_next_goes_through(
    rig: Rig,
) -> None:
    half = big_message("stopped half way", 200_000)
    logged = len(rig.gateway.log_lines())
    lost = len(rig.postfix.log_lines("lost connection after DATA"))
    sock = socket.create_connection(("127.0.0.1", rig.postfix.port), timeout=30)
    with sock, sock.makefile("rb") as reader:  # both closed: the connection ends
        assert reader.readline().startswith(b"220")
        sock.sendall(b"EHLO client.feedgate.test\r\n")
        while not (line := reader.readline()).startswith(b"250 "):
            assert line.startswith(b"250-")
        for command, reply in (
            (f"MAIL FROM:<{SENDER}>", b"250"),
            (f"RCPT TO:<{RCPT}>", b"250"),
            ("DATA", b"354"),
        ):
            sock.sendall(command.encode() + b"\r\n")
            assert reader.readline().startswith(reply)
        sock.sendall(half[: len(half) // 2])
        # Postfix is writing the message into a queue file (not shown by postqueue yet) ...
        assert queue_files(rig.postfix), "Postfix made no queue file for the message"
    wait_for(
        "Postfix to see the client go in DATA",
        lambda: len(rig.postfix.log_lines("lost connection after DATA")) > lost,
    )
    # ... and removes it when the client goes: nothing left to deliver.
    wait_for("the half message's queue file to go", lambda: not queue_files(rig.postfix))
    assert not rig.postfix.queued()
    after = mail("after the one that stopped")
    assert rig.send(after)[0] == 250
    rig.settled(1)
    rig.ledger().assert_each_once({message_id(after): "delivered"})  # the half one: nowhere
    assert [line["action"] for line in rig.gateway.log_lines()[logged:]] == ["deliver"]


# --- a scan that fails --------------------------------------------------------------------


def _rename_table(db: Path, old: str, new: str) -> None:
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
        conn.commit()
    finally:
        conn.close()


@contextmanager
def scans_failing(how: str, rig: Rig) -> Iterator[None]:
    """Make the gateway's scans fail, the ways tests/gateway does without a mock: ``worker
    killed`` (SIGKILL of its scanning worker: the next scan finds the pool broken, once) or
    ``database error`` (the match log's table renamed away for the block: every scan that
    matches raises ``no such table`` writing it, as a scanner meets a broken database)."""
    if how == "worker killed":
        rig.gateway.kill_workers()
        yield
        return
    _rename_table(rig.db, "mail_match_log", "mail_match_log_away")
    try:
        yield
    finally:
        _rename_table(rig.db, "mail_match_log_away", "mail_match_log")


@pytest.mark.parametrize("how", ["worker killed", "database error"])
def test_a_scan_that_fails_is_451_and_the_message_stays_queued_in_postfix(
    how: str, db: Path, sink: Sink, postfix_factory: PostfixFactory
) -> None:
    port = free_port()
    postfix = postfix_factory(content_filter=port, main_extra=PATIENT)
    gateway = GatewayProcess(db, port, postfix.reinject_port).start()
    rig = Rig(postfix, sink, db, gateway)
    try:
        raw = mail(f"scan fails {how}", FEEDS["tagfeed"][1])
        with scans_failing(how, rig):
            assert rig.send(raw)[0] == 250
            [entry] = deferred(postfix, 1, "451 4.3.0", "not scanned")
            assert postfix.message_id(entry.queue_id) == message_id(raw)
            [line] = gateway.log_lines()
            assert line["action"] == "tempfail"
            assert ("worker died" if how == "worker killed" else "no such table") in line["note"]
            if how == "database error":  # it still fails: another try, still queued
                postfix.flush()
                wait_for("the second try", lambda: len(gateway.log_lines()) == 2)
                deferred(postfix, 1, "451 4.3.0", "not scanned")
        assert sink.messages == []
        postfix.flush()
        rig.settled(1)
        rig.ledger().assert_each_once({message_id(raw): "delivered"})
        [delivered] = sink.messages
        assert delivered.header("Subject") == f"{PREFIX} scan fails {how}"  # scanned this time
        assert gateway.log_lines()[-1]["action"] == "tag"
    finally:
        gateway.stop()


def test_with_on_error_accept_a_failed_scan_is_delivered_unscanned(
    db: Path, sink: Sink, postfix_factory: PostfixFactory
) -> None:
    port = free_port()
    postfix = postfix_factory(content_filter=port, main_extra=PATIENT)
    gateway = GatewayProcess(db, port, postfix.reinject_port, "--on-error", "accept").start()
    rig = Rig(postfix, sink, db, gateway)
    try:
        sent: list[bytes] = []
        for how in ("worker killed", "database error"):
            # a message the scan would reject: delivered all the same, as received
            raw = mail(f"unscanned {how}", FEEDS["rejectfeed"][1])
            with scans_failing(how, rig):
                assert rig.send(raw)[0] == 250
                rig.settled(len(sent) + 1)
            sent.append(raw)
        rig.ledger().assert_each_once({message_id(raw): "delivered" for raw in sent})
        assert sorted(after_received(d.content) for d in sink.messages) == sorted(sent)
        lines = gateway.log_lines()
        assert [line["action"] for line in lines] == ["deliver", "deliver"]
        assert all("relayed unscanned" in line["note"] for line in lines)
        assert "worker died" in lines[0]["note"] and "no such table" in lines[1]["note"]
    finally:
        gateway.stop()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

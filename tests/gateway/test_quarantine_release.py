"""A quarantined message is released once across a cluster (``QuarantineStore.release``'s
claim, revision feeds_0008), on SQLite and on a real PostgreSQL: two stores on one database
(two nodes), threads releasing the same message at once to a real aiosmtpd sink: one delivery;
the loser told who is releasing it and since when; a releaser killed mid-send (kill -9) leaves a
claim that another node takes over once it lapses on the injected clock; a release that lost its
claim writes nothing over the one that took it over; a refusal frees the claim. Then the
release's TLS through the CLI and the REST API: by default the TLS the gateway recorded with the
message (its --relay-tls and CA file, feeds_0009), an explicit one winning."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gateway_helpers import Bench, Sink, bench, make_store, message, self_signed

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.mail.gateway import GatewayConfig
from feedgate.mail.model import Action, Envelope, Match, Part
from feedgate.mail.policy import Verdict
from feedgate.mail.quarantine import (
    DEFAULT_CLAIM_LEASE,
    QuarantineError,
    QuarantineStore,
    ReleaseInProgress,
    ReleaseRefused,
)
from feedgate.mail.relay import RelayTls, relay_tls
from pgserver import Database

RAW = b"Message-ID: <held@x>\r\nSubject: held\r\n\r\n.dot line\r\nbody\r\n"
ENV = Envelope("a@x.test", ("b@y.test", "c@y.test"), "192.0.2.1", "helo.test", "q1")
VERDICT = Verdict(
    None,
    Action.QUARANTINE,
    rules=("r",),
    matches=(Match(Part.URL, "domain", "bad.example", "bad.example", "otx", 1, {}),),
)
SRC = str(Path(__file__).resolve().parents[2] / "src")


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class GatedSink(Sink):
    """A sink that holds each DATA until ``go`` is set, saying when one ``arrived``: a
    release caught mid-send, without sleeping."""

    arrived: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.set()
        await asyncio.to_thread(self.go.wait, 120)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(scope="module")
def bench_() -> Iterator[Bench]:
    with bench() as b:
        yield b


@dataclass
class Node:
    """Two stores on one database: two nodes of a cluster (each its own engine and pool)."""

    url: str
    a: QuarantineStore
    b: QuarantineStore
    clock_a: Clock
    clock_b: Clock


@pytest.fixture
def nodes(any_db: Database) -> Iterator[Node]:
    clock_a, clock_b = Clock(), Clock()
    a = QuarantineStore(engine(any_db.url), now=clock_a, node="node-a")
    b = QuarantineStore(engine(any_db.url), now=clock_b, node="node-b")
    yield Node(any_db.url, a, b, clock_a, clock_b)
    a.engine.dispose()
    b.engine.dispose()


def serve(bench_: Bench, sink: Sink) -> tuple[Any, str]:
    server, port = bench_.serve_sink(sink)
    return server, f"127.0.0.1:{port}"


def test_threads_releasing_one_message_on_two_nodes_deliver_it_once(
    nodes: Node, bench_: Bench
) -> None:
    sink = Sink()
    server, relay = serve(bench_, sink)
    ident = nodes.a.add(RAW, ENV, VERDICT, relay=relay)
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def release(store: QuarantineStore, who: str) -> None:
        start.wait(30)
        try:
            store.release(ident, by=who)
            outcomes.append("released")
        except ReleaseInProgress:
            outcomes.append("in progress")
        except QuarantineError as exc:
            assert "already released" in exc.message, exc.message
            outcomes.append("already released")

    threads = [
        threading.Thread(target=release, args=(nodes.a if i % 2 else nodes.b, f"admin{i}"))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    bench_.close_server(server)
    assert len(outcomes) == 8 and outcomes.count("released") == 1, outcomes
    [got] = sink.received
    assert got.raw == RAW and got.rcpt_tos == list(ENV.rcpt_tos)
    held = nodes.b.get(ident)
    assert held.released_by is not None and held.claimed_by is None and held.claim_until is None


def test_the_loser_is_told_who_is_releasing_and_since_when(nodes: Node, bench_: Bench) -> None:
    sink = GatedSink()
    server, relay = serve(bench_, sink)
    ident = nodes.a.add(RAW, ENV, VERDICT, relay=relay)
    done: list[Any] = []
    first = threading.Thread(target=lambda: done.append(nodes.a.release(ident, by="alice")))
    first.start()
    try:
        assert sink.arrived.wait(60)  # alice's release is in DATA now
        with pytest.raises(ReleaseInProgress) as lost:
            nodes.b.release(ident, by="bob")
        since = nodes.clock_a.now.strftime("%Y-%m-%d %H:%M:%SZ")
        until = (nodes.clock_a.now + DEFAULT_CLAIM_LEASE).strftime("%Y-%m-%d %H:%M:%SZ")
        assert f"being released by alice on node-a since {since}" in lost.value.message
        assert until in lost.value.message and "not sent twice" in lost.value.message
        shown = nodes.b.get(ident)
        assert shown.claimed_by == "alice on node-a" and shown.released_at is None
        assert shown.to_dict()["claimed_by"] == "alice on node-a"
        assert "claim_token" not in shown.to_dict()
    finally:
        sink.go.set()
        first.join(60)
        bench_.close_server(server)
    assert done and done[0].released_by == "alice"
    with pytest.raises(QuarantineError, match="already released by alice"):
        nodes.b.release(ident, by="bob")
    assert len(sink.received) == 1


def test_a_refusal_frees_the_claim_and_keeps_the_error(nodes: Node, bench_: Bench) -> None:
    sink = Sink(data_reply="452 4.3.1 sink full")
    server, relay = serve(bench_, sink)
    ident = nodes.a.add(RAW, ENV, VERDICT, relay=relay)
    try:
        with pytest.raises(ReleaseRefused, match="sink full"):
            nodes.a.release(ident, by="alice")
        held = nodes.b.get(ident)
        assert held.claimed_by is None and held.released_at is None
        assert held.release_error is not None and "sink full" in held.release_error
        sink.data_reply = None
        released = nodes.b.release(ident, by="bob")  # at once: no claim left behind
    finally:
        bench_.close_server(server)
    assert released.released_by == "bob" and released.release_error is None
    assert nodes.a.get(ident).release_error is None and len(sink.received) == 1


_CRASHING_RELEASE = textwrap.dedent(
    """
    import sys
    from feedgate.db import engine
    from feedgate.mail.quarantine import QuarantineStore
    QuarantineStore(engine(sys.argv[1]), node="node-c").release(sys.argv[2], by="carol")
    """
)


def test_a_crashed_releasers_claim_is_taken_over_once_it_lapses(nodes: Node, bench_: Bench) -> None:
    """The releaser is killed with SIGKILL while the relay holds its DATA: its claim stays
    (nothing could clear it) until the lease passes on node b's clock."""
    stalls = GatedSink(data_reply="421 4.4.2 the client is gone")
    stall_server, stall_relay = serve(bench_, stalls)
    sink = Sink()
    server, relay = serve(bench_, sink)
    ident = nodes.a.add(RAW, ENV, VERDICT, relay=stall_relay)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_RELEASE, nodes.url, ident],
        env={**os.environ, "PYTHONPATH": SRC},
    )
    try:
        assert stalls.arrived.wait(60), "the release never reached DATA"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        held = nodes.b.get(ident)
        assert held.claimed_by is not None and held.claimed_by.startswith("carol on node-c")
        assert held.claim_until is not None
        nodes.clock_b.now = held.claim_until - timedelta(seconds=1)
        with pytest.raises(ReleaseInProgress, match="carol on node-c"):
            nodes.b.release(ident, by="bob", relay=relay)
        nodes.clock_b.now = held.claim_until  # the lease has run out
        released = nodes.b.release(ident, by="bob", relay=relay)
    finally:
        stalls.go.set()
        bench_.close_server(stall_server)
        bench_.close_server(server)
    assert released.released_by == "bob"
    assert [r.raw for r in sink.received] == [RAW] and stalls.received == []


def test_a_release_that_lost_its_claim_writes_nothing_over_the_new_one(
    nodes: Node, bench_: Bench
) -> None:
    """Alice's release hangs past her claim (her relay holds the DATA); bob takes it over and
    delivers; then alice's relay refuses: her refusal neither un-releases the message nor
    records an error on it."""
    hung = GatedSink(data_reply="451 4.3.0 finally: no")
    hung_server, hung_relay = serve(bench_, hung)
    sink = Sink()
    server, relay = serve(bench_, sink)
    ident = nodes.a.add(RAW, ENV, VERDICT, relay=hung_relay)
    errors: list[BaseException] = []

    def alice() -> None:
        try:
            nodes.a.release(ident, by="alice")
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=alice)
    first.start()
    try:
        assert hung.arrived.wait(60)
        nodes.clock_b.now = nodes.clock_a.now + DEFAULT_CLAIM_LEASE
        released = nodes.b.release(ident, by="bob", relay=relay)
        assert released.released_by == "bob"
    finally:
        hung.go.set()
        first.join(60)
        bench_.close_server(hung_server)
        bench_.close_server(server)
    [refusal] = errors
    assert isinstance(refusal, ReleaseRefused) and "finally: no" in refusal.message
    after = nodes.a.get(ident)
    assert after.released_by == "bob" and after.release_error is None
    assert after.claimed_by is None and len(sink.received) == 1


def test_claim_lease_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(QuarantineError, match="claim"):
        QuarantineStore(engine(str(tmp_path / "q.db")), claim_lease=timedelta(0))


# --- the release's TLS through its faces ----------------------------------------------------


def test_cli_release_with_required_tls(tmp_path: Path, bench_: Bench) -> None:
    """--relay-tls verify: refused (and kept) without a trusted certificate, then sent over
    TLS with --relay-ca-file; the held message shows who is releasing it while it is."""
    from click.testing import CliRunner

    from feedgate.cli import main

    context = self_signed(tmp_path, "relay.test")
    sink = Sink()
    server, port = bench_.serve_sink(sink, tls_context=context, require_starttls=True)
    db = str(tmp_path / "q.db")
    store = QuarantineStore(engine(db))
    ident = store.add(RAW, ENV, VERDICT, relay=f"127.0.0.1:{port}")
    runner = CliRunner()
    try:
        args = ["quarantine", "release", ident, "--db", db]
        none = runner.invoke(main, [*args, "--relay-tls", "none"])
        assert none.exit_code == 1 and "stays" in none.output
        assert "requires TLS or authentication (530" in none.output
        bad = runner.invoke(main, [*args, "--relay-tls", "verify", "--relay-ca-file", "/nope"])
        assert bad.exit_code == 2 and "cannot read the CA file /nope" in bad.output
        ca = str(tmp_path / "cert.pem")
        ok = runner.invoke(main, [*args, "--relay-tls", "verify", "--relay-ca-file", ca])
        assert ok.exit_code == 0, ok.output
    finally:
        bench_.close_server(server)
        store.engine.dispose()
    [got] = sink.received
    assert got.raw == RAW and got.tls


def test_rest_release_takes_a_tls_level_and_refuses_unknown_ones(
    tmp_path: Path, bench_: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from feedgate.asgi_server import serving
    from feedgate.feeds import secrets
    from feedgate.feeds.log import ThreatFeedLog
    from feedgate.feeds.store import FeedStore
    from feedgate.web.api import OPENAPI, create_api

    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    sink = Sink()
    server, port = bench_.serve_sink(sink)  # plain: no STARTTLS
    db = str(tmp_path / "q.db")
    feeds = FeedStore(engine(db))
    store = QuarantineStore(feeds.engine)
    ident = store.add(RAW, ENV, VERDICT, relay=f"127.0.0.1:{port}", tls=relay_tls("encrypt"))
    token = "release-tls-test-token-0123456789abcdef"
    app = create_api(feeds, ThreatFeedLog(feeds, write_file=False), token)
    try:
        with (
            serving(app) as url,
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as api,
        ):
            path = f"/api/v1/quarantine/{ident}/release"
            unknown = api.post(path, json={"relay_tls": "sometimes"})
            assert unknown.status_code == 400 and "not one of none, may" in unknown.json()["detail"]
            assert api.post(path, json={"relay_tls": 3}).status_code == 400
            for body in (None, {}, {"relay_tls": "encrypt"}):  # none given: the recorded one
                required = api.post(path, json=body)
                assert required.status_code == 502, required.text
                detail = required.json()["detail"]
                assert "does not offer STARTTLS" in detail and "encrypt" in detail, detail
                assert "answered" not in detail  # the relay was reached, and refused nothing
            assert sink.received == []
            held = api.get(f"/api/v1/quarantine/{ident}").json()
            assert held["claimed_by"] is None and "STARTTLS" in held["release_error"]
            done = api.post(path, json={"relay_tls": "may"})
            assert done.status_code == 200 and done.json()["released_by"] == "api"
    finally:
        bench_.close_server(server)
        feeds.close()
    assert len(sink.received) == 1 and not sink.received[0].tls
    schema = OPENAPI["paths"]["/api/v1/quarantine/{id}/release"]["post"]["requestBody"]
    props = schema["content"]["application/json"]["schema"]["properties"]
    assert props["relay_tls"]["enum"] == ["none", "may", "encrypt", "verify"]


# --- the TLS the gateway recorded with the message -------------------------------------------


@dataclass
class Quarantined:
    """Messages a real gateway (with a relay TLS of its own) quarantined, and the database."""

    db: str
    ids: list[str]


def quarantine_through_gateway(
    bench_: Bench, folder: Path, relay_port: int, tls: RelayTls, count: int
) -> Quarantined:
    """``count`` messages sent over SMTP to a gateway relaying to ``relay_port`` with ``tls``,
    each quarantined by its rule (250, nothing relayed); their ids, oldest first."""
    import smtplib

    db = folder / "feeds.db"
    make_store(db).close()
    config = GatewayConfig(relay=("127.0.0.1", relay_port), workers=1, relay_tls=tls)
    gateway, port, _pids = bench_.start_gateway(db, config)
    try:
        for n in range(count):
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
                smtp.ehlo("client.test")
                raw = message("quarantine", subject=f"held {n}")
                assert smtp.sendmail("a@sender.test", ["u@rcpt.test"], raw) == {}
    finally:
        bench_.stop_gateway(gateway)
    store = QuarantineStore(engine(str(db)))
    try:
        held = sorted(store.list(), key=lambda m: m.subject or "")
    finally:
        store.engine.dispose()
    assert [m.subject for m in held] == [f"held {n}" for n in range(count)]
    return Quarantined(str(db), [m.id for m in held])


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.mark.usefixtures("key")
def test_a_release_goes_with_the_gateways_relay_tls_unless_told_otherwise(
    tmp_path: Path, bench_: Bench
) -> None:
    """A gateway at --relay-tls encrypt towards a relay without STARTTLS: its quarantined
    mail is not released there in plain text (the release says why, nothing answered 451),
    goes over TLS to a relay that offers it, and in plain text only when asked for."""
    from click.testing import CliRunner

    from feedgate.cli import main

    plain, tls_sink = Sink(), Sink()
    plain_server, plain_port = bench_.serve_sink(plain)
    tls_server, tls_port = bench_.serve_sink(tls_sink, tls_context=self_signed(tmp_path))
    runner = CliRunner()
    try:
        kept = quarantine_through_gateway(bench_, tmp_path, plain_port, relay_tls("encrypt"), 2)
        first, second = kept.ids
        db = ["--db", kept.db]
        listed = runner.invoke(main, ["quarantine", "list", "--format", "jsonl", *db])
        rows = [json.loads(line) for line in listed.output.splitlines()]
        assert {(r["relay"], r["relay_tls"]) for r in rows} == {
            (f"127.0.0.1:{plain_port}", "encrypt")
        }
        shown = runner.invoke(main, ["quarantine", "show", first, *db]).output
        assert f"relay:       127.0.0.1:{plain_port}  (TLS encrypt)" in shown

        refused = runner.invoke(main, ["quarantine", "release", first, *db])
        assert refused.exit_code == 1
        assert (
            f"not released: relay 127.0.0.1:{plain_port} does not offer STARTTLS, and TLS level"
            " encrypt sends only over TLS (it stays in the quarantine)"
        ) in refused.output
        assert plain.received == []
        recorded = runner.invoke(main, ["quarantine", "show", first, *db]).output
        assert "does not offer STARTTLS" in recorded and "answered" not in recorded

        over_tls = runner.invoke(
            main, ["quarantine", "release", first, "--relay", f"127.0.0.1:{tls_port}", *db]
        )
        assert over_tls.exit_code == 0, over_tls.output
        assert over_tls.output == f"released {first} to 1 recipient\n"
        [got] = tls_sink.received
        assert got.tls and got.raw.startswith(b"From: friend@sender.test")

        asked = runner.invoke(main, ["quarantine", "release", second, "--relay-tls", "may", *db])
        assert asked.exit_code == 0, asked.output  # an explicit choice wins over the record
        [plain_got] = plain.received
        assert not plain_got.tls and b"held 1" in plain_got.raw
    finally:
        bench_.close_server(plain_server)
        bench_.close_server(tls_server)


@pytest.mark.usefixtures("key")
def test_a_release_verifies_with_the_recorded_ca_file_and_says_when_it_is_gone(
    tmp_path: Path, bench_: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--relay-tls verify --relay-ca-file: the release trusts that file alone (the system's
    trust, SSL_CERT_FILE here, knows no certificate of the relay); when the file is gone, the
    release says so and what to give, and the message stays held and unclaimed."""
    from click.testing import CliRunner

    from feedgate.cli import main

    certs, other = tmp_path / "certs", tmp_path / "other"
    certs.mkdir()
    other.mkdir()
    self_signed(other, "stranger.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(other / "cert.pem"))
    sink = Sink()
    server, port = bench_.serve_sink(sink, tls_context=self_signed(certs, "relay.test"))
    ca = certs / "cert.pem"
    runner = CliRunner()
    try:
        kept = quarantine_through_gateway(bench_, tmp_path, port, relay_tls("verify", str(ca)), 2)
        first, second = kept.ids
        db = ["--db", kept.db]
        done = runner.invoke(main, ["quarantine", "release", first, *db])
        assert done.exit_code == 0, done.output
        [got] = sink.received
        assert got.tls and b"held 0" in got.raw

        ca.rename(certs / "moved.pem")
        gone = runner.invoke(main, ["quarantine", "release", second, *db])
        assert gone.exit_code == 1
        assert f"recorded when it was quarantined (verify with {ca})" in gone.output
        assert f"cannot read the CA file {ca}" in gone.output and "--relay-tls" in gone.output
        store = QuarantineStore(engine(kept.db))
        held = store.get(second)
        store.engine.dispose()
        assert held.released_at is None and held.claimed_by is None
        lonely = runner.invoke(
            main, ["quarantine", "release", second, "--relay-ca-file", str(ca), *db]
        )
        assert lonely.exit_code == 2 and "give --relay-tls verify" in lonely.output
        told = runner.invoke(main, ["quarantine", "release", second, "--relay-tls", "encrypt", *db])
        assert told.exit_code == 0, told.output
    finally:
        bench_.close_server(server)
    assert [r.tls for r in sink.received] == [True, True]


def test_the_release_help_says_the_recorded_tls_is_the_default() -> None:
    from click.testing import CliRunner

    from feedgate.cli import main

    shown = " ".join(CliRunner().invoke(main, ["quarantine", "release", "--help"]).output.split())
    assert "default: the TLS recorded with the message" in shown
    assert "given, this wins" in shown

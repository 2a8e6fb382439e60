"""``feedgate.mail.gateway`` end to end through real sockets: smtplib as the sending MTA, the
gateway on 127.0.0.1 with a worker process scanning against a real store, an aiosmtpd sink as
the relay. Every action, and nothing lost when the relay, the scan or the client fails."""

from __future__ import annotations

import getpass
import json
import multiprocessing
import smtplib
import socket
import sqlite3
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gateway_helpers import Bench, Sink, bench, make_store, message
from gateway_helpers import self_signed as _tls_context

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.mail.gateway import Gateway, GatewayConfig
from feedgate.mail.limits import MAX_MESSAGE_BYTES
from feedgate.mail.quarantine import QuarantineStore


@dataclass
class Rig:
    bench: Bench
    db: Path
    sink: Sink
    sink_port: int
    gateway: Gateway
    port: int
    mail_log: Path
    sink_server: Any

    def reply(self, raw: bytes, rcpts: list[str] | None = None) -> tuple[int, str]:
        """The code and text of the reply to the final dot, read at the protocol level."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            assert smtp.mail("a@sender.test")[0] == 250
            for rcpt in rcpts or ["user@rcpt.test"]:
                assert smtp.rcpt(rcpt)[0] == 250
            code, text = smtp.data(raw)
            return code, text.decode()

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.mail_log.read_text().splitlines()]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:  # the workers inherit the environment
        mp.setenv(secrets.KEY_ENV, secrets.generate_key())
        mp.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg")))
        yield tmp_path_factory.mktemp("gw")


@pytest.fixture(scope="module")
def rig(env: Path) -> Iterator[Rig]:
    db = env / "feeds.db"
    make_store(db).close()
    with bench() as b:
        sink = Sink()
        server, sink_port = b.serve_sink(sink)
        config = GatewayConfig(relay=("127.0.0.1", sink_port), workers=1, scan_timeout=5.0)
        gateway, port, _pids = b.start_gateway(db, config, env / "mail.log")
        rig = Rig(b, db, sink, sink_port, gateway, port, env / "mail.log", server)
        yield rig
        b.stop_gateway(gateway)
        b.close_server(rig.sink_server)


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    if "rig" in request.fixturenames:
        rig: Rig = request.getfixturevalue("rig")
        rig.sink.received.clear()
        rig.sink.refuse_rcpt.clear()
        rig.sink.data_reply = None


def test_clean_mail_is_relayed_byte_for_byte_and_logged(rig: Rig) -> None:
    raw = message(None, extra="caf\u00e9 \u2603\n" + "x" * 3000 + "\n")
    code, text = rig.reply(raw, ["one@rcpt.test", "two@rcpt.test"])
    assert code == 250 and "queued as" in text
    queue_id = text.rsplit(" ", 1)[1]
    assert len(queue_id) == 12
    [got] = rig.sink.received
    assert got.raw == raw  # the leading dot, the 8-bit text and the long line unchanged
    assert got.mail_from == "a@sender.test" and got.rcpt_tos == ["one@rcpt.test", "two@rcpt.test"]
    line = rig.log_lines()[-1]
    assert line["queue_id"] == queue_id and line["action"] == "deliver"
    assert line["client_ip"] == "127.0.0.1" and line["recipients"] == 2


def test_reject_is_550_naming_the_source_not_the_value_and_nothing_relayed(rig: Rig) -> None:
    code, text = rig.reply(message("reject"))
    assert code == 550 and text.startswith("5.7.1")
    assert "reject" in text and "domain" in text and "reject.example" not in text
    assert rig.sink.received == []
    line = rig.log_lines()[-1]
    assert line["action"] == "reject" and line["rules"] == ["reject-rule"]
    assert line["matches"] == [
        {"part": "url", "kind": "domain", "value": "reject.example", "source": "reject"}
    ]


def test_drop_answers_250_relays_nothing_and_logs_it(rig: Rig) -> None:
    code, _text = rig.reply(message("drop"))
    assert code == 250 and rig.sink.received == []
    assert rig.log_lines()[-1]["action"] == "drop"


def test_quarantine_keeps_the_message_until_released_byte_for_byte(rig: Rig) -> None:
    raw = message("quarantine", subject="invoice")
    code, text = rig.reply(raw, ["x@rcpt.test", "y@rcpt.test"])
    assert code == 250 and rig.sink.received == []
    queue_id = text.split("queued as ", 1)[1].split()[0]
    store = QuarantineStore(engine(str(rig.db)))
    [held] = [m for m in store.list() if m.envelope.queue_id == queue_id]
    assert text.endswith(f"(quarantined as {held.id})")  # what the handing MTA logs
    assert held.subject == "invoice" and held.rules == ("threat-feeds",)
    assert held.envelope.rcpt_tos == ("x@rcpt.test", "y@rcpt.test")
    assert held.envelope.client_ip == "127.0.0.1"
    assert held.relay == f"127.0.0.1:{rig.sink_port}"
    assert store.raw(held.id) == raw
    released = store.release(held.id, by="tester")
    assert released.released_by == "tester"
    [got] = rig.sink.received
    assert got.raw == raw and got.rcpt_tos == ["x@rcpt.test", "y@rcpt.test"]
    assert held.id not in [m.id for m in store.list()]


def test_tag_and_header_relay_the_changed_headers_and_the_same_body(rig: Rig) -> None:
    sent = {}
    for action in ("tag", "header"):
        sent[action] = message(action, subject="=?utf-8?q?caf=C3=A9?=")
        code, _text = rig.reply(sent[action])
        assert code == 250
    tagged, headed = (r.raw for r in rig.sink.received)
    # Everything but the one header changed is the bytes received, the body included.
    assert tagged == sent["tag"].replace(
        b"\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n",
        b"\r\nSubject: [THREAT] =?utf-8?q?caf=C3=A9?=\r\n",
    )
    assert headed == b"X-Feedgate-Threat: header domain header.example\r\n" + sent["header"]


def test_log_rule_relays_byte_for_byte(rig: Rig) -> None:
    raw = message("log")
    assert rig.reply(raw)[0] == 250
    assert [r.raw for r in rig.sink.received] == [raw]
    assert rig.log_lines()[-1]["action"] == "log"


def test_relay_down_is_451_and_the_message_is_taken_once_it_is_back(rig: Rig) -> None:
    rig.bench.close_server(rig.sink_server)
    raw = message(None)
    code, text = rig.reply(raw)
    assert code == 451 and text.startswith("4.4.1") and "unreachable" in text
    assert rig.log_lines()[-1]["action"] == "tempfail"
    rig.sink_server, _port = rig.bench.serve_sink(rig.sink, rig.sink_port)
    assert rig.reply(raw)[0] == 250
    assert [r.raw for r in rig.sink.received] == [raw]


def test_relay_refusals_are_passed_on_or_retried_never_half_delivered(rig: Rig) -> None:
    rig.sink.refuse_rcpt = {"gone@rcpt.test": "550 5.1.1 no such user"}
    code, text = rig.reply(message(None), ["gone@rcpt.test"])
    assert code == 550 and "no such user" in text
    code, text = rig.reply(message(None), ["ok@rcpt.test", "gone@rcpt.test"])
    assert code == 451 and "refused 1 of 2" in text
    rig.sink.refuse_rcpt = {"busy@rcpt.test": "452 4.2.2 mailbox full"}
    assert rig.reply(message(None), ["busy@rcpt.test"])[0] == 451
    rig.sink.refuse_rcpt = {}
    rig.sink.data_reply = "554 5.6.0 content refused"
    code, text = rig.reply(message(None))
    assert code == 554 and "content refused" in text
    assert rig.sink.received == []


def test_a_thousand_recipients_reach_the_relay(rig: Rig) -> None:
    rcpts = [f"user{i}@rcpt.test" for i in range(1000)]
    raw = message(None)
    assert rig.reply(raw, rcpts)[0] == 250
    [got] = rig.sink.received
    assert got.rcpt_tos == rcpts and got.raw == raw
    assert rig.log_lines()[-1]["recipients"] == 1000


def test_a_client_that_stops_mid_data_leaves_nothing_behind(rig: Rig) -> None:
    store = QuarantineStore(engine(str(rig.db)))
    held = len(store.list())
    with socket.create_connection(("127.0.0.1", rig.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        for command in (
            b"HELO client.test",
            b"MAIL FROM:<a@sender.test>",
            b"RCPT TO:<u@rcpt.test>",
        ):
            sock.sendall(command + b"\r\n")
            assert reader.readline().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        sock.sendall(message("quarantine")[:200])  # no final dot: the connection goes
    raw = message(None)
    assert rig.reply(raw)[0] == 250  # the gateway serves on; the cut message went nowhere
    assert [r.raw for r in rig.sink.received] == [raw]
    assert len(store.list()) == held


def test_ehlo_announces_the_size_limit_and_starttls_is_offered_only_with_a_cert(rig: Rig) -> None:
    with smtplib.SMTP("127.0.0.1", rig.port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        assert smtp.esmtp_features["size"] == str(MAX_MESSAGE_BYTES)
        assert "starttls" not in smtp.esmtp_features
        code, _text = smtp.mail("a@sender.test", [f"SIZE={MAX_MESSAGE_BYTES + 1}"])
        assert code == 552


def test_a_dead_worker_gives_451_and_a_fresh_pool_scans_the_next(rig: Rig) -> None:
    _kill_workers(rig.gateway)
    code, text = rig.reply(message("reject"))
    assert code == 451 and text.startswith("4.3.0")
    assert rig.log_lines()[-1]["action"] == "tempfail"
    assert "worker died" in str(rig.log_lines()[-1]["note"])
    rig.bench.run(rig.gateway.ready())
    assert rig.reply(message("reject"))[0] == 550
    assert rig.sink.received == []


def test_a_scan_past_its_time_limit_gives_451(rig: Rig) -> None:
    with _database_locked(rig.db):  # the match log cannot be written: the scan waits
        code, text = rig.reply(message("log"))
    assert code == 451 and text.startswith("4.3.0")
    assert "took over" in str(rig.log_lines()[-1]["note"])
    assert rig.sink.received == []
    rig.bench.run(rig.gateway.ready())


def _kill_workers(gateway: Gateway) -> None:
    """SIGKILL the gateway's scanning workers and wait until they are gone."""
    children = {p.pid: p for p in multiprocessing.active_children()}
    assert gateway.worker_pids
    for pid in gateway.worker_pids:
        children[pid].kill()
        children[pid].join(timeout=30)


class _database_locked:
    """Hold SQLite's write lock on ``db`` (readers go on, writers wait)."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.conn = sqlite3.connect(self.db, isolation_level=None, timeout=30)
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


@pytest.fixture(scope="module")
def accepting(env: Path) -> Iterator[Rig]:
    """A gateway with --on-error accept, a small size limit and a short scan time limit."""
    db = env / "accepting.db"
    make_store(db).close()
    with bench() as b:
        sink = Sink()
        server, sink_port = b.serve_sink(sink)
        config = GatewayConfig(
            relay=("127.0.0.1", sink_port),
            workers=1,
            on_error="accept",
            scan_timeout=2.0,
            max_message_bytes=10_000,
            max_connections=2,
            tls_context=_tls_context(env),
        )
        gateway, port, _pids = b.start_gateway(db, config, env / "accepting.log")
        yield Rig(b, db, sink, sink_port, gateway, port, env / "accepting.log", server)
        b.stop_gateway(gateway)
        b.close_server(server)


def test_on_error_accept_relays_unscanned_when_the_scan_fails(accepting: Rig) -> None:
    accepting.sink.received.clear()
    raw = message("reject")
    _kill_workers(accepting.gateway)
    assert accepting.reply(raw)[0] == 250
    assert "relayed unscanned" in str(accepting.log_lines()[-1]["note"])
    accepting.bench.run(accepting.gateway.ready())
    logged = message("log")
    with _database_locked(accepting.db):
        assert accepting.reply(logged)[0] == 250
    assert "took over" in str(accepting.log_lines()[-1]["note"])
    assert [r.raw for r in accepting.sink.received] == [raw, logged]
    accepting.bench.run(accepting.gateway.ready())


def test_a_line_longer_than_any_buffer_is_relayed_whole(rig: Rig) -> None:
    # RFC 5321 says 1000 octets; real mail breaks it, and a filter that refused the line
    # would bounce mail its MTA took. Lines that begin with a dot or are empty at the start
    # are read one at a time (where the end mark could hide), so the long one is among them.
    lines = [b".", b"", b"." + b"w" * 300_000, b"Subject: long lines", b"", b"v" * 200_000, b"."]
    raw = b"\r\n".join(lines) + b"\r\n"
    assert rig.reply(raw)[0] == 250
    assert [r.raw for r in rig.sink.received] == [raw]


def test_a_message_over_the_size_limit_gets_552_at_data(accepting: Rig) -> None:
    with socket.create_connection(("127.0.0.1", accepting.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        for command in (b"HELO c.test", b"MAIL FROM:<a@sender.test>", b"RCPT TO:<u@rcpt.test>"):
            sock.sendall(command + b"\r\n")
            assert reader.readline().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        sock.sendall(
            b"Subject: big\r\n\r\n" + b"y" * 998 + b"\r\n" * 11 + b"z" * 20_000 + b"\r\n.\r\n"
        )
        assert reader.readline().startswith(b"552")


def test_connections_beyond_the_limit_get_421(accepting: Rig) -> None:
    first = smtplib.SMTP("127.0.0.1", accepting.port, timeout=30)
    second = smtplib.SMTP("127.0.0.1", accepting.port, timeout=30)
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", accepting.port, timeout=30)
        assert refused.value.smtp_code == 421
    finally:
        first.quit()
        second.quit()


def test_quarantine_cli_lists_shows_and_releases_to_the_sink(rig: Rig) -> None:
    from click.testing import CliRunner

    from feedgate.cli import main

    raw = message("quarantine", subject="cli release")
    code, text = rig.reply(raw, ["r1@rcpt.test", "r2@rcpt.test"])
    assert code == 250
    queue_id = text.split("queued as ", 1)[1].split()[0]
    runner = CliRunner()
    db = ["--db", str(rig.db)]
    listed = runner.invoke(main, ["quarantine", "list", "--format", "jsonl", *db])
    assert listed.exit_code == 0, listed.output
    [row] = [
        r
        for r in map(json.loads, listed.output.splitlines())
        if r["envelope"]["queue_id"] == queue_id
    ]
    assert row["subject"] == "cli release" and row["rules"] == ["threat-feeds"]
    assert row["message_id"].startswith("<quarantine.")
    assert row["matches"][0]["value"] == "quarantine.example"
    assert {"id", "envelope", "message_id", "subject", "time", "rules", "matches"} <= set(row)
    table = runner.invoke(main, ["quarantine", "list", "--source", "quarantine", *db])
    assert row["id"] in table.output
    assert (
        row["id"] not in runner.invoke(main, ["quarantine", "list", "--source", "tag", *db]).output
    )
    shown = runner.invoke(main, ["quarantine", "show", row["id"], *db])
    assert "r1@rcpt.test, r2@rcpt.test" in shown.output and "quarantine.example" in shown.output
    assert runner.invoke(main, ["quarantine", "show", row["id"], "--raw", *db]).stdout_bytes == raw

    rig.sink.data_reply = "452 4.3.1 sink full"  # the relay refuses: the message stays held
    refused = runner.invoke(main, ["quarantine", "release", row["id"], *db])
    assert refused.exit_code == 1 and "sink full" in refused.output and "stays" in refused.output
    assert "release refused" in runner.invoke(main, ["quarantine", "show", row["id"], *db]).output
    rig.sink.data_reply = None
    released = runner.invoke(main, ["quarantine", "release", row["id"], *db])
    assert released.exit_code == 0, released.output
    assert released.output == f"released {row['id']} to 2 recipients\n"
    [got] = rig.sink.received
    assert got.raw == raw and got.rcpt_tos == ["r1@rcpt.test", "r2@rcpt.test"]
    again = runner.invoke(main, ["quarantine", "release", row["id"], *db])
    assert again.exit_code == 1 and "already released" in again.output
    assert len(rig.sink.received) == 1
    shown = runner.invoke(main, ["quarantine", "show", row["id"], *db]).output
    assert "released:" in shown and getpass.getuser() in shown
    deleted = runner.invoke(main, ["quarantine", "delete", row["id"], "nope", *db])
    assert deleted.exit_code == 1 and "no quarantined message nope" in deleted.output
    assert runner.invoke(main, ["quarantine", "show", row["id"], *db]).exit_code == 1


def test_the_gateway_command_serves_until_interrupted(rig: Rig, env: Path) -> None:
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable, "-m", "feedgate.cli", "gateway", "--listen", "127.0.0.1:0",
            "--relay", f"127.0.0.1:{rig.sink_port}", "--workers", "1",
            "--db", str(rig.db), "--mail-log", str(env / "cli.log"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("gateway:"), first
        port = int(first.split()[1].rsplit(":", 1)[1])
        raw = message(None)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            assert smtp.sendmail("a@sender.test", ["u@rcpt.test"], raw) == {}
        assert [r.raw for r in rig.sink.received] == [raw]
        assert json.loads((env / "cli.log").read_text().splitlines()[-1])["action"] == "deliver"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_quarantine_rest_api_lists_gets_releases_and_deletes(rig: Rig) -> None:
    import httpx

    from feedgate.asgi_server import serving
    from feedgate.feeds.log import ThreatFeedLog
    from feedgate.feeds.store import FeedStore
    from feedgate.web.api import OPENAPI, create_api

    token = "quarantine-test-token-0123456789abcdef"
    raws = [message("quarantine", subject=f"api {i}") for i in range(2)]
    for raw in raws:
        assert rig.reply(raw, ["api@rcpt.test"])[0] == 250
    feeds = FeedStore(engine(str(rig.db)))
    app = create_api(feeds, ThreatFeedLog(feeds, write_file=False), token)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with serving(app) as url, httpx.Client(base_url=url, headers=headers) as api:
            assert httpx.get(f"{url}/api/v1/quarantine").status_code == 401
            rows = api.get("/api/v1/quarantine", params={"source": "quarantine"}).json()
            ids = {r["subject"]: r["id"] for r in rows}
            first, second = ids["api 0"], ids["api 1"]
            assert api.get(f"/api/v1/quarantine/{first}").json()["envelope"]["rcpt_tos"] == [
                "api@rcpt.test"
            ]
            assert api.get(f"/api/v1/quarantine/{first}/raw").content == raws[0]
            assert api.get("/api/v1/quarantine", params={"since": "soon"}).status_code == 400
            assert api.get("/api/v1/quarantine/nope").status_code == 404
            released = api.post(f"/api/v1/quarantine/{first}/release", json={})
            assert released.status_code == 200 and released.json()["released_by"] == "api"
            assert [r.raw for r in rig.sink.received] == [raws[0]]
            assert api.post(f"/api/v1/quarantine/{first}/release").status_code == 409
            bad = api.post(f"/api/v1/quarantine/{second}/release", json={"relay": "nowhere"})
            assert bad.status_code == 400 and "HOST:PORT" in bad.json()["detail"]
            rig.sink.refuse_rcpt = {"api@rcpt.test": "550 5.1.1 gone"}
            refused = api.post(f"/api/v1/quarantine/{second}/release")
            assert refused.status_code == 502 and "gone" in refused.json()["detail"]
            assert "gone" in api.get(f"/api/v1/quarantine/{second}").json()["release_error"]
            assert api.delete(f"/api/v1/quarantine/{second}").status_code == 204
            assert api.get(f"/api/v1/quarantine/{second}").status_code == 404
            listed = {r["id"] for r in api.get("/api/v1/quarantine").json()}
            assert first not in listed and second not in listed
            everything = api.get("/api/v1/quarantine", params={"all": "true"}).json()
            assert first in {r["id"] for r in everything}
    finally:
        feeds.close()
    assert "/api/v1/quarantine/{id}/release" in OPENAPI["paths"]


def test_starttls_with_the_given_certificate_then_mail_is_relayed(
    accepting: Rig, env: Path
) -> None:
    accepting.sink.received.clear()
    client = ssl.create_default_context(cafile=str(env / "cert.pem"))
    raw = message(None)
    with smtplib.SMTP("127.0.0.1", accepting.port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        assert "starttls" in smtp.esmtp_features
        assert smtp.starttls(context=client)[0] == 220
        assert smtp.sock is not None and isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.sock.getpeercert() is not None  # verified against our certificate
        smtp.ehlo("client.test")
        assert smtp.sendmail("a@sender.test", ["u@rcpt.test"], raw) == {}
    assert [r.raw for r in accepting.sink.received] == [raw]


def test_passed_mail_is_indexed_so_a_later_poll_finds_it(rig: Rig) -> None:
    """The gateway's workers index what they pass: an observable polled after the message was
    delivered finds it in the retro-scan (issue 13 §4), by the queue id the gateway gave it."""
    from datetime import UTC, datetime

    from feedgate.feeds.store import FeedStore
    from feedgate.mail.mailindex import MailIndex
    from feedgate.mail.policy_store import PolicyStore
    from feedgate.mail.retro import RetroScanner
    from feedgate.observables import Kind, Observable

    raw = message(None, extra="see http://files.later-bad.example/x.zip\n")
    code, text = rig.reply(raw)
    assert code == 250
    queue_id = text.rsplit(" ", 1)[1]
    store = FeedStore(engine(str(rig.db)))
    try:
        retro = RetroScanner(
            store, PolicyStore(store.engine, store.source_names), MailIndex(store.engine)
        )
        retro.run_once()  # up to date with what the store held when the message passed
        now = datetime.now(UTC)
        with store.segment("quarantine") as seg:
            seg.upsert([Observable(Kind.DOMAIN, "later-bad.example")], now)
            seg.finish(now)
        found = [f for f in retro.run_once() if f.name == queue_id]
        assert [(f.passed, f.action, f.kind, f.value) for f in found] == [
            ("deliver", "quarantine", "domain", "later-bad.example")
        ]
    finally:
        store.close()

"""XFORWARD at the gateway over real sockets: a trusted client (loopback, as Postfix's
content_filter) tells the original client, whose IP the scan then matches; an untrusted one is
refused and its peer address used; the attributes hold for one transaction; and the gateway
passes them on to a relay that announces XFORWARD (here a second gateway, which logs them)."""

from __future__ import annotations

import ipaddress
import json
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gateway_helpers import T0, Bench, Sink, bench, make_store, message

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.mail.gateway import Gateway, GatewayConfig
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.quarantine import QuarantineStore
from feedgate.observables import Kind, LayeredContext, Observable

#: The client addresses a feed lists (TEST-NET and the documentation prefix: not suppressed by
#: the false-positive gate), and one it does not.
LISTED_V4 = "192.0.2.55"
LISTED_V6 = "2001:db8::55"
CLEAN = "198.51.100.7"
XFORWARD_ATTRIBUTES = "NAME ADDR PORT PROTO HELO IDENT SOURCE"


def _store(db: Path) -> None:
    """The gateway bench's store, plus a source listing the two client addresses and a rule
    quarantining a message whose client IP it lists."""
    store = make_store(db)
    store.add_source(Source(name="badip", hostname="otx.example", collection="user_AV"))
    context = LayeredContext({"package_title": "bad senders"}, {"indicator_title": "spam host"})
    with store.segment("badip") as seg:
        seg.upsert(
            [
                Observable(Kind.IPV4, LISTED_V4, None, context),
                Observable(Kind.IPV6, LISTED_V6, None, context),
            ],
            T0,
        )
        seg.finish(T0)
    PolicyStore(store.engine, store.source_names).add_rule(
        "client-ip-rule", parts=["client-ip"], sources=["badip"], action="quarantine"
    )
    store.close()


@dataclass
class Served:
    gateway: Gateway
    port: int
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@dataclass
class Rig:
    bench: Bench
    db: Path
    sink: Sink
    back: Served  # trusts loopback (the default), relays to the sink
    front: Served  # trusts loopback, relays to back (which announces XFORWARD to it)
    wary: Served  # trusts only 192.0.2.0/24: 127.0.0.1 may not send XFORWARD


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("xforward")
    db = folder / "feeds.db"
    with pytest.MonkeyPatch.context() as mp:  # the workers inherit the environment
        mp.setenv(secrets.KEY_ENV, secrets.generate_key())
        mp.setenv("XDG_DATA_HOME", str(folder / "xdg"))
        _store(db)
        with bench() as b:
            sink = Sink()
            sink_server, sink_port = b.serve_sink(sink)
            served: dict[str, Served] = {}
            relays = {"back": sink_port, "wary": sink_port}
            for name in ("back", "wary", "front"):
                relay = relays.get(name) or served["back"].port
                config = GatewayConfig(
                    relay=("127.0.0.1", relay),
                    workers=1,
                    scan_timeout=30.0,
                    **(
                        {"xforward_from": (ipaddress.ip_network("192.0.2.0/24"),)}
                        if name == "wary"
                        else {}
                    ),
                )
                gateway, port, _pids = b.start_gateway(db, config, folder / f"{name}.log")
                served[name] = Served(gateway, port, folder / f"{name}.log")
            try:
                yield Rig(b, db, sink, served["back"], served["front"], served["wary"])
            finally:
                for one in served.values():
                    b.stop_gateway(one.gateway)
                b.close_server(sink_server)


@pytest.fixture(autouse=True)
def fresh(rig: Rig) -> None:
    rig.sink.received.clear()


def _client(served: Served) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", served.port, timeout=30)
    smtp.ehlo("postfix.example")
    return smtp


def _send(smtp: smtplib.SMTP, raw: bytes, *xforward: str) -> tuple[int, str]:
    """One transaction: each XFORWARD (which must be taken), then the message; the reply to
    the final dot."""
    for arg in xforward:
        code, text = smtp.docmd("XFORWARD", arg)
        assert code == 250, text
    assert smtp.mail("a@sender.test")[0] == 250
    assert smtp.rcpt("user@rcpt.test")[0] == 250
    code, text = smtp.data(raw)
    return code, text.decode()


def _held(rig: Rig, queue_id: str) -> Any:
    [held] = [
        m for m in QuarantineStore(engine(str(rig.db))).list() if m.envelope.queue_id == queue_id
    ]
    return held


def test_ehlo_announces_xforward_and_help_lists_it_to_a_trusted_client(rig: Rig) -> None:
    with _client(rig.back) as smtp:
        assert smtp.esmtp_features["xforward"] == XFORWARD_ATTRIBUTES
        assert "XFORWARD" in smtp.docmd("HELP")[1].decode().split()
        assert smtp.docmd("HELP", "XFORWARD")[1].decode() == "Syntax: XFORWARD attribute=value ..."


def test_the_forwarded_client_is_the_one_scanned_and_postfix_s_queue_id_is_logged(
    rig: Rig,
) -> None:
    raw = message(None, subject="from a listed client")
    with _client(rig.back) as smtp:
        code, text = _send(
            smtp,
            raw,
            f"NAME=mail.sender.test ADDR={LISTED_V4} PORT=40123",
            "PROTO=ESMTP HELO=mail.sender.test IDENT=4XbC1d2F3 SOURCE=REMOTE",
        )
    assert code == 250 and text.startswith("2.0.0 Ok: queued as 4XbC1d2F3 (quarantined as ")
    assert rig.sink.received == []  # quarantined by the client-ip rule
    line = rig.back.lines()[-1]
    assert line["queue_id"] == "4XbC1d2F3" and line["action"] == "quarantine"
    assert line["client_ip"] == LISTED_V4 and line["helo"] == "mail.sender.test"
    assert line["rules"] == ["client-ip-rule"]
    assert line["matches"] == [
        {"part": "client-ip", "kind": "ipv4", "value": LISTED_V4, "source": "badip"}
    ]
    held = _held(rig, "4XbC1d2F3")
    assert held.envelope.client_ip == LISTED_V4 and held.envelope.helo == "mail.sender.test"
    assert QuarantineStore(engine(str(rig.db))).raw(held.id) == raw


def test_without_xforward_the_peer_is_the_client(rig: Rig) -> None:
    raw = message(None)
    with _client(rig.back) as smtp:
        code, text = _send(smtp, raw)
    assert code == 250
    line = rig.back.lines()[-1]
    assert line["action"] == "deliver" and line["client_ip"] == "127.0.0.1"
    assert line["helo"] == "postfix.example"
    assert len(line["queue_id"]) == 12 and text.endswith(line["queue_id"])  # the gateway's own
    assert [r.raw for r in rig.sink.received] == [raw]


def test_ipv6_forms(rig: Rig) -> None:
    with _client(rig.back) as smtp:
        code, _ = _send(smtp, message(None), "ADDR=IPV6:2001:DB8:0::55 IDENT=V6A")
        assert code == 250
        assert rig.back.lines()[-1]["client_ip"] == LISTED_V6
        assert rig.back.lines()[-1]["action"] == "quarantine"
        _send(smtp, message(None), f"ADDR=IPv6:::ffff:{CLEAN} IDENT=V6B")
        assert rig.back.lines()[-1]["client_ip"] == CLEAN  # IPv4-mapped: the IPv4 address
        assert rig.back.lines()[-1]["action"] == "deliver"
    assert _held(rig, "V6A").envelope.client_ip == LISTED_V6


def test_attributes_hold_for_one_transaction_only(rig: Rig) -> None:
    with _client(rig.back) as smtp:
        _send(smtp, message(None), f"ADDR={LISTED_V4}", "IDENT=ONE1")
        first = rig.back.lines()[-1]
        assert (first["queue_id"], first["client_ip"], first["action"]) == (
            "ONE1",
            LISTED_V4,
            "quarantine",
        )
        _send(smtp, message(None))  # after the final dot: forgotten
        second = rig.back.lines()[-1]
        assert second["client_ip"] == "127.0.0.1" and second["action"] == "deliver"
        assert second["queue_id"] != "ONE1"
        assert smtp.docmd("XFORWARD", f"ADDR={LISTED_V4}")[0] == 250
        assert smtp.rset()[0] == 250  # RSET forgets too
        _send(smtp, message(None))
        assert rig.back.lines()[-1]["client_ip"] == "127.0.0.1"
        assert smtp.mail("a@sender.test")[0] == 250  # inside a transaction: 503
        code, text = smtp.docmd("XFORWARD", f"ADDR={LISTED_V4}")
        assert (code, text) == (503, b"5.5.1 Error: MAIL transaction in progress")
        assert smtp.rcpt("user@rcpt.test")[0] == 250
        assert smtp.data(message(None))[0] == 250
        assert rig.back.lines()[-1]["client_ip"] == "127.0.0.1"
        # EHLO starts over as well
        assert smtp.docmd("XFORWARD", f"ADDR={LISTED_V4}")[0] == 250
        smtp.ehlo("postfix.example")
        _send(smtp, message(None))
        assert rig.back.lines()[-1]["client_ip"] == "127.0.0.1"


def test_unavailable_attributes_are_never_filled_from_the_session(rig: Rig) -> None:
    with _client(rig.back) as smtp:
        _send(smtp, message(None), "NAME=[UNAVAILABLE] ADDR=[unavailable] IDENT=[UNAVAILABLE]")
        line = rig.back.lines()[-1]
        assert line["client_ip"] is None and line["helo"] is None  # not 127.0.0.1
        assert len(line["queue_id"]) == 12  # no upstream id: the gateway's own
        # IDENT and SOURCE alone (Postfix's local submissions) keep the session's client
        _send(smtp, message(None), "IDENT=LOC4L SOURCE=LOCAL")
        line = rig.back.lines()[-1]
        assert (line["client_ip"], line["queue_id"]) == ("127.0.0.1", "LOC4L")


def test_bad_commands_get_501_and_change_nothing(rig: Rig) -> None:
    with _client(rig.back) as smtp:
        for arg, reply in [
            ("", b"5.5.4 Syntax: XFORWARD attribute=value..."),
            ("ADDR", b"5.5.4 Error: attribute=value expected"),
            ("COLOR=blue", b"5.5.4 Bad XFORWARD attribute name: COLOR"),
            ("ADDR=192.0.2.300", b"5.5.4 Bad ADDR syntax: 192.0.2.300"),
            (f"ADDR={LISTED_V4} PORT=x", b"5.5.4 Bad PORT syntax: x"),
            ("HELO=a+0Db", b"5.5.4 Bad HELO syntax: a?b"),
        ]:
            assert smtp.docmd("XFORWARD", arg) == (501, reply)
        _send(smtp, message(None))
        line = rig.back.lines()[-1]
        assert line["client_ip"] == "127.0.0.1" and line["action"] == "deliver"


def test_an_untrusted_client_is_refused_550_not_told_and_its_peer_scanned(rig: Rig) -> None:
    raw = message(None)
    with _client(rig.wary) as smtp:
        assert "xforward" not in smtp.esmtp_features
        assert "XFORWARD" not in smtp.docmd("HELP")[1].decode().split()
        code, text = smtp.docmd("XFORWARD", f"ADDR={LISTED_V4} IDENT=FORGED")
        assert (code, text) == (550, b"5.7.0 Error: insufficient authorization")
        code, _ = _send(smtp, raw)
    assert code == 250
    line = rig.wary.lines()[-1]
    assert line["client_ip"] == "127.0.0.1" and line["action"] == "deliver"
    assert line["queue_id"] != "FORGED"
    assert [r.raw for r in rig.sink.received] == [raw]


def test_the_forwarded_client_is_passed_on_to_a_relay_that_announces_xforward(
    rig: Rig,
) -> None:
    raw = message(None, subject="passed on")
    with _client(rig.front) as smtp:
        code, _ = _send(
            smtp,
            raw,
            f"NAME=mail.clean.test ADDR={CLEAN} PORT=25025",
            "PROTO=ESMTP HELO=mail.clean.test IDENT=4PaSsOn1 SOURCE=REMOTE",
        )
    assert code == 250
    assert [r.raw for r in rig.sink.received] == [raw]
    front, back = rig.front.lines()[-1], rig.back.lines()[-1]
    assert (front["queue_id"], front["client_ip"]) == ("4PaSsOn1", CLEAN)
    # front told back the original client, not itself
    assert (back["queue_id"], back["client_ip"], back["helo"]) == (
        "4PaSsOn1",
        CLEAN,
        "mail.clean.test",
    )


def test_without_xforward_the_gateway_passes_on_its_own_client_and_queue_id(rig: Rig) -> None:
    raw = message(None)
    with _client(rig.front) as smtp:
        code, text = _send(smtp, raw)
    assert code == 250
    front, back = rig.front.lines()[-1], rig.back.lines()[-1]
    assert text.endswith(front["queue_id"])
    assert back["queue_id"] == front["queue_id"]  # the admin follows one id through both
    assert back["client_ip"] == "127.0.0.1" and back["helo"] == "postfix.example"
    assert [r.raw for r in rig.sink.received] == [raw]


def test_the_gateway_command_takes_and_checks_xforward_from(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from feedgate.cli import main

    runner = CliRunner()
    for bad, said in [("192.0.2.1/24", "has host bits set"), ("loopback", "not a network")]:
        done = runner.invoke(
            main,
            [
                *("gateway", "--relay", "127.0.0.1:10026", "--xforward-from", bad),
                *("--db", str(tmp_path / "feeds.db")),
            ],
        )
        assert done.exit_code == 2 and said in done.output and "--xforward-from" in done.output
    assert not (tmp_path / "feeds.db").exists()  # refused before anything started

"""TLS on the relay leg (``feedgate.mail.relay``: levels after Postfix's
``smtp_tls_security_level``) against real aiosmtpd sinks on 127.0.0.1 that offer or require
STARTTLS with self-signed certificates made here, one whose TLS is broken (no certificate: every
handshake fails) and one that refuses STARTTLS; then through a gateway (a required TLS that
fails is 451, nothing relayed) and through its CLI options."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from gateway_helpers import Bench, Sink, bench, make_store, message, self_signed

from feedgate.feeds import secrets
from feedgate.mail.gateway import GatewayConfig
from feedgate.mail.model import Envelope
from feedgate.mail.relay import (
    TLS_LEVELS,
    RelayReply,
    RelayTls,
    RelayTlsError,
    relay_tls,
    send,
)

ENV = Envelope("a@sender.test", ("u@rcpt.test",), "192.0.2.1", "helo.test", "q1")
RAW = message(None)


class _RefusesStartTls(SMTP):
    """Announces STARTTLS (it has a context) but answers 454 to it, as a server whose TLS is
    down for a while does."""

    async def smtp_STARTTLS(self, arg: str) -> None:
        await self.push("454 4.7.0 TLS not available due to temporary reason")


@dataclass
class Sinks:
    """One sink per kind of relay, each with its port."""

    bench: Bench
    certs: Path  # the TLS sinks' certificate: cert.pem
    other: Path  # another self-signed certificate, which signed nothing here: other/cert.pem
    plain: tuple[Sink, int]
    offers: tuple[Sink, int]  # STARTTLS offered (self-signed certificate for 127.0.0.1)
    requires: tuple[Sink, int]  # STARTTLS required: 530 to MAIL without it
    broken: tuple[Sink, int]  # STARTTLS offered, every handshake fails
    refuses: tuple[Sink, int]  # STARTTLS offered, answered 454


@pytest.fixture(scope="module")
def sinks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sinks]:
    certs = tmp_path_factory.mktemp("relay-certs")
    other = tmp_path_factory.mktemp("other-cert")
    context = self_signed(certs, "relay.test")
    self_signed(other, "stranger.test")
    broken = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # no certificate loaded
    with bench() as b:
        servers: list[Any] = []

        def serve(**kwargs: Any) -> tuple[Sink, int]:
            sink = Sink()
            server, port = b.serve_sink(sink, **kwargs)
            servers.append(server)
            return sink, port

        yield Sinks(
            b,
            certs,
            other,
            plain=serve(),
            offers=serve(tls_context=context),
            requires=serve(tls_context=context, require_starttls=True),
            broken=serve(tls_context=broken),
            refuses=serve(tls_context=context, server_class=_RefusesStartTls),
        )
        for server in servers:
            b.close_server(server)


@pytest.fixture(autouse=True)
def _clear(request: pytest.FixtureRequest) -> None:
    if "sinks" in request.fixturenames:
        s: Sinks = request.getfixturevalue("sinks")
        for sink, _port in (s.plain, s.offers, s.requires, s.broken, s.refuses):
            sink.received.clear()


def relay(target: tuple[Sink, int], tls: RelayTls | None = None, host: str = "127.0.0.1") -> Any:
    """Send RAW to the sink; (the reply, what the sink took of it: bytes, over TLS)."""
    sink, port = target
    before = len(sink.received)
    reply = send(host, port, ENV, RAW, timeout=30, tls=tls)
    return reply, [(r.raw, r.tls) for r in sink.received[before:]]


def refused(reply: RelayReply, status: str, *words: str) -> None:
    assert reply.code == 451 and reply.reply.startswith(f"451 {status} "), reply.reply
    for word in words:
        assert word in reply.reply, reply.reply


# --- may: opportunistic, the default ---------------------------------------------------------


def test_may_uses_starttls_when_offered_without_checking_the_certificate(sinks: Sinks) -> None:
    reply, got = relay(sinks.offers)  # tls=None: the default, may
    assert reply.accepted and got == [(RAW, True)]  # self-signed, untrusted: still encrypted


def test_may_sends_in_plain_text_to_a_relay_without_starttls(sinks: Sinks) -> None:
    reply, got = relay(sinks.plain, relay_tls("may"))
    assert reply.accepted and got == [(RAW, False)]


def test_may_falls_back_to_plain_text_when_the_handshake_fails(sinks: Sinks) -> None:
    """Postfix's documented fallback: a new connection without STARTTLS, the message once."""
    reply, got = relay(sinks.broken, relay_tls("may"))
    assert reply.accepted and got == [(RAW, False)]


def test_may_goes_on_in_plain_text_when_starttls_is_refused(sinks: Sinks) -> None:
    reply, got = relay(sinks.refuses)
    assert reply.accepted and got == [(RAW, False)]


def test_may_meets_a_relay_that_requires_tls(sinks: Sinks) -> None:
    reply, got = relay(sinks.requires)
    assert reply.accepted and got == [(RAW, True)]


def test_none_never_starttls_and_a_relay_requiring_it_is_a_temporary_failure(
    sinks: Sinks,
) -> None:
    """530 is our configuration's fault, not the message's: 451, so nothing bounces."""
    reply, got = relay(sinks.offers, relay_tls("none"))
    assert reply.accepted and got == [(RAW, False)]
    reply, got = relay(sinks.requires, relay_tls("none"))
    refused(reply, "4.7.0", "requires TLS", "530")
    assert got == []


# --- encrypt and verify: TLS or 451 ----------------------------------------------------------


def test_encrypt_sends_only_over_tls_certificate_unchecked(sinks: Sinks) -> None:
    tls = relay_tls("encrypt")
    reply, got = relay(sinks.offers, tls)
    assert reply.accepted and got == [(RAW, True)]
    reply, got = relay(sinks.plain, tls)
    refused(reply, "4.7.4", "does not offer STARTTLS", "encrypt")
    assert got == []
    reply, got = relay(sinks.broken, tls)
    refused(reply, "4.7.5", "TLS handshake failed", "encrypt")
    assert got == []
    reply, got = relay(sinks.refuses, tls)
    refused(reply, "4.7.4", "refused STARTTLS", "454")
    assert got == []


def test_verify_needs_a_trusted_certificate_for_the_relays_address(
    sinks: Sinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(sinks.other / "cert.pem"))  # trusts no sink here
    reply, got = relay(sinks.offers, relay_tls("verify"))
    refused(reply, "4.7.5", "certificate not trusted", "verify")
    assert got == []
    trusted = relay_tls("verify", str(sinks.certs / "cert.pem"))
    reply, got = relay(sinks.offers, trusted)
    assert reply.accepted and got == [(RAW, True)]
    # the certificate names 127.0.0.1 only: reached as localhost, its name does not match
    reply, got = relay(sinks.offers, trusted, host="localhost")
    refused(reply, "4.7.5", "localhost")
    assert got == []
    reply, got = relay(sinks.plain, trusted)
    refused(reply, "4.7.4", "does not offer STARTTLS")


def test_verify_trusts_the_environment_unless_a_ca_file_is_given(
    sinks: Sinks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE (set on these machines) is the system's trust when no CA file is given;
    a CA file given wins over it."""
    monkeypatch.setenv("SSL_CERT_FILE", str(sinks.certs / "cert.pem"))
    reply, got = relay(sinks.offers, relay_tls("verify"))
    assert reply.accepted and got == [(RAW, True)]
    reply, got = relay(sinks.offers, relay_tls("verify", str(sinks.other / "cert.pem")))
    refused(reply, "4.7.5", "certificate not trusted")
    assert got == []


def test_bad_settings_say_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(RelayTlsError, match="not one of none, may, encrypt, verify"):
        relay_tls("maybe")
    with pytest.raises(RelayTlsError, match="give --relay-tls verify"):
        relay_tls("encrypt", str(tmp_path / "ca.pem"))
    with pytest.raises(RelayTlsError, match=r"cannot read the CA file .*missing\.pem"):
        relay_tls("verify", str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(RelayTlsError, match=r"junk\.pem"):
        relay_tls("verify", str(tmp_path / "junk.pem"))
    assert relay_tls(" Verify ").level == "verify" and relay_tls("none").context is None


def test_the_cli_spells_the_same_levels() -> None:
    from feedgate.cli._relay_tls import LEVELS

    assert LEVELS == TLS_LEVELS


def test_a_relay_that_stalls_is_cut_at_the_deadline(sinks: Sinks) -> None:
    """The whole conversation's bound (what keeps a release inside its claim), however long
    each step's timeout."""
    import threading

    release = threading.Event()

    class Stalls(Sink):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            import asyncio

            await asyncio.to_thread(release.wait, 60)
            return "451 4.3.0 too late"

    sink = Stalls()
    server, port = sinks.bench.serve_sink(sink)
    try:
        reply = send("127.0.0.1", port, ENV, RAW, timeout=60, deadline=1.0)
        refused(reply, "4.4.1", "did not finish within 1 s")
    finally:
        release.set()
        sinks.bench.close_server(server)
    assert sink.received == []


# --- through the gateway and its command ------------------------------------------------------


@pytest.fixture
def gateway_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    make_store(tmp_path / "feeds.db").close()
    return tmp_path


def test_gateway_answers_451_when_required_tls_fails_and_relays_nothing(
    sinks: Sinks, gateway_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import smtplib

    monkeypatch.setenv("SSL_CERT_FILE", str(sinks.other / "cert.pem"))
    sink, port = sinks.offers
    config = GatewayConfig(
        relay=("127.0.0.1", port), workers=1, scan_timeout=10.0, relay_tls=relay_tls("verify")
    )
    gateway, gw_port, _ = sinks.bench.start_gateway(
        gateway_env / "feeds.db", config, gateway_env / "mail.log"
    )
    try:
        with smtplib.SMTP("127.0.0.1", gw_port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            smtp.mail("a@sender.test")
            smtp.rcpt("u@rcpt.test")
            code, text = smtp.data(RAW)
    finally:
        sinks.bench.stop_gateway(gateway)
    assert code == 451 and text.decode().startswith("4.7.5"), text
    assert b"certificate not trusted" in text
    assert sink.received == []  # the sender keeps it and retries
    [line] = [json.loads(x) for x in (gateway_env / "mail.log").read_text().splitlines()]
    assert line["action"] == "tempfail" and "certificate not trusted" in line["note"]


def test_gateway_command_refuses_bad_relay_tls_options(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from feedgate.cli import main

    base = ["gateway", "--relay", "127.0.0.1:1", "--db", str(tmp_path / "f.db")]
    runner = CliRunner()
    bad = runner.invoke(main, [*base, "--relay-tls", "maybe"])
    assert bad.exit_code == 2 and "--relay-tls" in bad.output
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    lonely = runner.invoke(main, [*base, "--relay-ca-file", str(ca)])
    assert lonely.exit_code == 2 and "--relay-ca-file" in lonely.output
    assert "give --relay-tls verify" in lonely.output
    assert not (tmp_path / "f.db").exists()  # refused before anything was opened

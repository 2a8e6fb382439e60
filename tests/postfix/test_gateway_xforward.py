"""``feedgate gateway`` behind a real Postfix's ``content_filter`` sees the original client:
Postfix XFORWARDs it (``smtp_send_xforward_command = yes`` on the filter transport), so a
client-IP observable decides, the gateway's mail log carries Postfix's queue id, and the
gateway passes the client on to Postfix's reinjection smtpd, which logs it for the reinjected
message. The test client poses as a remote sender with Postfix's XCLIENT (allowed for
127.0.0.1 on this instance), so its mail arrives "from" TEST-NET addresses on loopback."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from milter_helpers import make_store, message
from test_gateway_postfix import start_gateway

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.mail.quarantine import QuarantineStore
from feedgate.observables import Kind, LayeredContext, Observable
from postfix import Postfix, PostfixFactory, Sink, free_port, wait_for

LISTED = "192.0.2.55"  # TEST-NET-1: the false-positive gate does not suppress it
CLEAN = "198.51.100.7"


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def gateway_db(tmp_path: Path) -> Path:
    """The milter tests' store (a source per action, by URL) plus a source listing
    :data:`LISTED` and a rule quarantining mail whose client IP it lists."""
    db = tmp_path / "feeds.db"
    store, policy = make_store(db)
    store.add_source(Source(name="badclients", hostname="otx.example", collection="user_AV"))
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    context = LayeredContext({"package_title": "spam senders"}, {"indicator_title": LISTED})
    with store.segment("badclients") as seg:
        seg.upsert([Observable(Kind.IPV4, LISTED, None, context)], at)
        seg.finish(at)
    policy.add_rule("bad-client", parts=["client-ip"], sources=["badclients"], action="quarantine")
    store.close()
    return db


@pytest.fixture
def behind_postfix(gateway_db: Path, postfix_factory: PostfixFactory) -> Iterator[Postfix]:
    port = free_port()
    postfix = postfix_factory(
        content_filter=port,
        main_extra={
            "smtpd_authorized_xclient_hosts": "127.0.0.1",
            # The posed clients may relay as the loopback one may (permit_mynetworks).
            "mynetworks": f"127.0.0.0/8 {LISTED}/32 {CLEAN}/32",
        },
    )
    proc = start_gateway(gateway_db, port, postfix.reinject_port)  # --xforward-from: loopback
    try:
        yield postfix
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def send_as(port: int, addr: str, name: str, raw: bytes) -> str:
    """Send ``raw`` to Postfix as the client ``name[addr]`` (XCLIENT, then EHLO again, as
    Postfix asks); Postfix's queue id from its 250 reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.feedgate.test")
        assert "xclient" in client.esmtp_features
        code, text = client.docmd("XCLIENT", f"NAME={name} ADDR={addr}")
        assert code == 220, text
        client.ehlo(name)
        assert client.mail("alice@example.org")[0] == 250
        assert client.rcpt("bob@example.net")[0] == 250
        code, reply = client.data(raw)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def mail_log(db: Path) -> dict[str, dict[str, Any]]:
    """The gateway's mail log lines by queue id (its default path under XDG_DATA_HOME)."""
    path = db.parent / "xdg" / "feedgate" / "mail.log"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return {line["queue_id"]: line for line in lines}


def test_postfix_xforwards_the_client_so_client_ip_rules_decide(
    behind_postfix: Postfix, gateway_db: Path, sink: Sink
) -> None:
    postfix = behind_postfix
    listed = send_as(postfix.port, LISTED, "mail.listed.test", message("from a listed client"))
    clean = send_as(postfix.port, CLEAN, "mail.clean.test", message("from a clean client"))

    [delivered] = sink.wait_count(1)
    assert delivered.header("Subject") == "from a clean client"
    postfix.wait_queue_empty()
    [kept] = QuarantineStore(engine(str(gateway_db))).list()
    assert kept.subject == "from a listed client"
    assert (kept.envelope.client_ip, kept.envelope.helo) == (LISTED, "mail.listed.test")
    assert kept.envelope.queue_id == listed  # Postfix's id, from XFORWARD IDENT
    assert kept.rules == ("bad-client",)

    logged = wait_for("both messages in the gateway's mail log", lambda: mail_log(gateway_db))
    assert set(logged) == {listed, clean}  # the admin greps Postfix's log by these
    assert logged[listed]["action"] == "quarantine" and logged[listed]["client_ip"] == LISTED
    assert logged[listed]["matches"] == [
        {"part": "client-ip", "kind": "ipv4", "value": LISTED, "source": "badclients"}
    ]
    assert logged[clean]["action"] == "deliver" and logged[clean]["client_ip"] == CLEAN
    assert logged[clean]["helo"] == "mail.clean.test"

    # Postfix's own log: the hand-over to the gateway answered with Postfix's id ...
    [handed] = [
        line for line in postfix.log_lines(f"{listed}: to=<bob@example.net>") if "relay=" in line
    ]
    assert f"status=sent (250 2.0.0 Ok: queued as {listed} (quarantined as " in handed
    # ... and the reinjected clean message is logged with its original client and id.
    [reinjected] = postfix.log_lines(f"orig_queue_id={clean}")
    assert f"orig_client=mail.clean.test[{CLEAN}]" in reinjected
    assert not sink.messages[1:]  # nothing else arrived

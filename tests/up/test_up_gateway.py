"""`feedgate up` runs the SMTP gateway too (issue 13, "Done when"): a real `up` process, mail
sent to the gateway port it printed with smtplib, clean mail filed byte for byte into the
Maildir under the data directory, a message with a demo observable quarantined, and a stop that
leaves no process and no open port behind. The Maildir sink keeps its port (the gateway's + 1)
across restarts, so a message quarantined before one is released after it; a busy sink port
is said before anything is done."""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import socket
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from up_helpers import alive, feedgate, feedgate_bytes, gone_within, running_up, up_env

from feedgate.mail.maildir_sink import Maildir, MaildirSink

SENDER = "friend@example.net"


def clean_message(subject: str = "lunch on friday") -> bytes:
    """A message an SMTP hop could damage: a leading dot, 8-bit text, trailing spaces."""
    msg = EmailMessage()
    msg["From"] = f"Friend <{SENDER}>"
    msg["To"] = "alice@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = "<lunch.1@example.net>"
    msg.set_content("Hi,\n.a line with a leading dot\nnäher dran\ntrailing  \n", cte="8bit")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def send(port: int, raw: bytes, rcpts: tuple[str, ...] = ("alice@example.org",)) -> str:
    """One SMTP transaction to 127.0.0.1:port; the reply to the final dot."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo()
        assert smtp.mail(SENDER, ["BODY=8BITMIME"])[0] == 250
        for rcpt in rcpts:
            assert smtp.rcpt(rcpt)[0] == 250
        code, reply = smtp.data(raw)
        return f"{code} {reply.decode()}"


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_up_delivers_clean_mail_to_the_maildir_and_quarantines_a_demo_observable(
    tmp_path: Path,
) -> None:
    env = up_env(tmp_path)
    maildir = tmp_path / "data" / "feedgate" / "delivered"
    with running_up(tmp_path, env, "--pulses", "5") as up:
        lines = [line.split(":", 1)[0] for line in up.lines]
        assert lines.index("gateway") < lines.index("API") == len(lines) - 1, up.text
        relay = up.said(r"^gateway:\s+\S+ -> relay (127\.0\.0\.1:\d+) ").group(1)
        said = up.said(r"^delivered: (\S+)/  \(Maildir of the sink on (\S+):").groups()
        assert said == (str(maildir / "new"), relay)
        assert up.said(r"^mail log:\s+(\S+)").group(1) == str(maildir.parent / "mail.log")
        workers = up.scanning_workers()
        assert len(workers) == min(2, os.cpu_count() or 1)

        raw = clean_message()
        reply = send(up.gateway_port, raw, ("alice@example.org", "bob@example.org"))
        assert reply.startswith("250 2.0.0 Ok: queued as "), reply
        # 250 came after the sink's 250, which came after the rename into new/: it is there.
        (filed,) = (maildir / "new").iterdir()
        assert filed.read_bytes() == (
            b"Return-Path: <friend@example.net>\r\n"
            b"Delivered-To: alice@example.org\r\n"
            b"Delivered-To: bob@example.org\r\n" + raw
        )
        assert list((maildir / "tmp").iterdir()) == []

        found = feedgate(
            env, "observables", "--source", "otx-demo", "--kind", "url", "--limit", "1"
        )
        assert found.returncode == 0, found.stderr
        url = json.loads(found.stdout.splitlines()[0])["value"]
        bad = clean_message(subject="your invoice").replace(
            b"trailing", f"see {url}\r\ntrailing".encode()
        )
        reply = send(up.gateway_port, bad)
        assert reply.startswith("250 2.0.0 Ok: queued as "), reply  # quarantined: 250 too
        listed = feedgate(env, "quarantine", "list", "--format", "jsonl")
        assert listed.returncode == 0, listed.stderr
        (held,) = [json.loads(line) for line in listed.stdout.splitlines()]
        assert held["subject"] == "your invoice"
        assert held["envelope"]["rcpt_tos"] == ["alice@example.org"]
        assert [(m["value"], m["source"]) for m in held["matches"]] == [(url, "otx-demo")]
        assert feedgate_bytes(env, "quarantine", "show", held["id"], "--raw") == bad
        assert len(list((maildir / "new").iterdir())) == 1  # the held one was not delivered
        log = (maildir.parent / "mail.log").read_text().splitlines()
        assert [json.loads(line)["action"] for line in log] == ["deliver", "quarantine"]

        assert up.stop("ctrl-c") == 0, up.stderr.read_text()
    # The workers were shut down and waited for before `up` exited; nothing else stayed.
    assert [pid for pid in workers if alive(pid)] == []
    assert gone_within(up.proc.pid, 10) == []
    assert refused(up.gateway_port) and refused(int(relay.rsplit(":", 1)[1]))
    stderr = up.stderr.read_text()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


@pytest.fixture
def own_relay(tmp_path: Path) -> Iterator[tuple[int, Maildir]]:
    """The Maildir sink run on its own, in this process: the MTA that `up --relay` names."""
    maildir = Maildir(tmp_path / "relay-mail")
    sink = MaildirSink(maildir, hostname="relay.test")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    asyncio.run_coroutine_threadsafe(sink.start(sock), loop).result(30)
    try:
        yield sock.getsockname()[1], maildir
    finally:
        asyncio.run_coroutine_threadsafe(sink.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def test_up_relays_to_the_relay_given_and_stops_on_sigterm(
    tmp_path: Path, own_relay: tuple[int, Maildir]
) -> None:
    port, relay_maildir = own_relay
    env = up_env(tmp_path)
    with running_up(tmp_path, env, "--pulses", "1", "--relay", f"127.0.0.1:{port}") as up:
        up.said(rf"^gateway:\s+127\.0\.0\.1:\d+ -> relay 127\.0\.0\.1:{port} ")
        assert "delivered:" not in up.text
        raw = clean_message()
        assert send(up.gateway_port, raw).startswith("250 "), up.text
        (filed,) = relay_maildir.new.iterdir()
        assert filed.read_bytes().endswith(b"\r\nDelivered-To: alice@example.org\r\n" + raw)
        assert not (tmp_path / "data" / "feedgate" / "delivered").exists()
        assert up.stop("sigterm") == 0, up.stderr.read_text()
    assert gone_within(up.proc.pid, 10) == []
    assert refused(up.gateway_port)


def test_up_refuses_a_relay_that_is_not_host_port(tmp_path: Path) -> None:
    done = feedgate(up_env(tmp_path), "up", "--relay", "mail.example")
    assert done.returncode == 2
    assert "--relay" in done.stderr and "HOST:PORT" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was done


def free_port_pair() -> int:
    """A loopback port P with P and P + 1 free now (``up`` binds them soon after)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise AssertionError("no two free consecutive loopback ports")


def quarantine_one(env: dict[str, str], gateway_port: int) -> bytes:
    """A message carrying a demo observable, sent to the gateway and quarantined there."""
    found = feedgate(env, "observables", "--source", "otx-demo", "--kind", "url", "--limit", "1")
    assert found.returncode == 0, found.stderr
    url = json.loads(found.stdout.splitlines()[0])["value"]
    bad = clean_message(subject="held over").replace(b"trailing", f"see {url}\r\ntrailing".encode())
    assert send(gateway_port, bad).startswith("250 "), "not taken"
    return bad


def test_mail_quarantined_before_up_restarts_is_released_to_the_sink_after(
    tmp_path: Path,
) -> None:
    env = up_env(tmp_path)
    maildir = tmp_path / "data" / "feedgate" / "delivered"
    port = free_port_pair()
    with running_up(tmp_path, env, "--pulses", "5", gateway_port=port) as up:
        assert up.gateway_port == port
        up.said(rf"^gateway:\s+127\.0\.0\.1:{port} -> relay 127\.0\.0\.1:{port + 1} ")
        up.said(rf"^delivered: \S+/  \(Maildir of the sink on 127\.0\.0\.1:{port + 1}:")
        bad = quarantine_one(env, port)
        assert up.stop("ctrl-c") == 0, up.stderr.read_text()
    (held,) = [
        json.loads(line)
        for line in feedgate(env, "quarantine", "list", "--format", "jsonl").stdout.splitlines()
    ]
    assert held["relay"] == f"127.0.0.1:{port + 1}" and held["relay_tls"] == "may"
    assert not maildir.joinpath("new").exists() or not list(maildir.joinpath("new").iterdir())

    with running_up(tmp_path, env, "--pulses", "5", gateway_port=port) as up:
        up.said(rf"^delivered: \S+/  \(Maildir of the sink on 127\.0\.0\.1:{port + 1}:")
        released = feedgate(env, "quarantine", "release", held["id"])
        assert released.returncode == 0, released.stderr
        assert released.stdout == f"released {held['id']} to 1 recipient\n"
        (filed,) = (maildir / "new").iterdir()
        assert filed.read_bytes() == (
            b"Return-Path: <friend@example.net>\r\nDelivered-To: alice@example.org\r\n" + bad
        )
        assert up.stop("sigterm") == 0, up.stderr.read_text()


def test_a_release_to_a_sink_that_is_down_says_it_is_unreachable(tmp_path: Path) -> None:
    """What `up` stopped leaves: the recorded relay answers nothing, and the release says
    that, not that the relay answered."""
    env = up_env(tmp_path)
    with running_up(tmp_path, env, "--pulses", "5") as up:
        quarantine_one(env, up.gateway_port)
        sink = up.said(r"^delivered: \S+/  \(Maildir of the sink on (\S+):").group(1)
        assert up.stop("ctrl-c") == 0, up.stderr.read_text()
    (held,) = [
        json.loads(line)
        for line in feedgate(env, "quarantine", "list", "--format", "jsonl").stdout.splitlines()
    ]
    refused = feedgate(env, "quarantine", "release", held["id"])
    assert refused.returncode == 1
    assert (
        f"feedgate: error: message {held['id']} not released: relay {sink} unreachable:"
        " Connection refused (it stays in the quarantine)"
    ) in refused.stderr, refused.stderr


def test_a_busy_sink_port_is_said_before_anything_is_done(tmp_path: Path) -> None:
    port = free_port_pair()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen(1)
        done = feedgate(up_env(tmp_path), "up", "--port", "0", "--gateway-port", str(port))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"feedgate: error: cannot listen on 127.0.0.1:{port + 1} (the Maildir sink:"
        " --gateway-port + 1): Address already in use (choose another with --gateway-port, or"
        " stop what is using it)"
    )
    assert not (tmp_path / "data").exists()
    last = feedgate(up_env(tmp_path), "up", "--port", "0", "--gateway-port", "65535")
    assert last.returncode == 2 and "--gateway-port" in last.stderr and "--relay" in last.stderr
    assert not (tmp_path / "data").exists()

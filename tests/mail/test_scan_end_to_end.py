"""The point of it all, as real processes: a hub serves a pulse, feedgate polls it, and
``feedgate scan`` catches the messages that carry its observables.

The pulse holds one observable of each kind a message can offer (a domain, a URL, an IPv4, a
CIDR, an e-mail address, a SHA-256), all documentation addresses and reserved names, so the
false-positive gate lets them through. Each message carries one of them in the part a rule
names; disabling the source or adding an exception changes the verdicts at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
PAYLOAD = b"feedgate end-to-end attachment payload\n"
PULSE_TITLE = "Mail campaign for the end-to-end test"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FEEDGATE, *args], env=env, capture_output=True, text=True, timeout=120)


def _pulse() -> dict[str, Any]:
    created = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    indicators = [
        ("domain", "evil-mail.example"),
        ("URL", "http://phish.test/login.php?id=7"),
        ("IPv4", "198.51.100.23"),
        ("CIDR", "203.0.113.0/24"),
        ("email", "Attacker@bad-sender.test"),
        ("FileHash-SHA256", hashlib.sha256(PAYLOAD).hexdigest()),
    ]
    return {
        "id": secrets.token_hex(12),
        "name": PULSE_TITLE,
        "author_name": "AlienVault",
        "created": created,
        "modified": created,
        "tlp": "white",
        "public": True,
        "indicators": [
            {"indicator": value, "type": kind, "created": created, "title": f"{kind} of the test"}
            for kind, value in indicators
        ],
    }


def _message(
    subject: str,
    body: str = "Hello, nothing to see here.\n",
    *,
    sender: str = "friend@example.org",
    received_ip: str = "192.0.2.10",
    attachment: bytes | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["Received"] = (
        f"from mx.example.org (mx.example.org [{received_ip}]) by gw.example.com with ESMTP"
    )
    msg["From"] = sender
    msg["To"] = "user@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@example.org>"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename="x.bin"
        )
    return bytes(msg)


#: Each message, and the (part, kind, stored value) it must be caught by.
MESSAGES: dict[str, tuple[bytes, tuple[str, str, str] | None]] = {
    "clean.eml": (_message("clean"), None),
    "domain.eml": (
        _message("domain", "See https://www.evil-mail.example/offer now\n"),
        ("url", "domain", "evil-mail.example"),
    ),
    "url.eml": (
        _message("url", "Log in: hxxp://phish[.]test/login.php?id=7\n"),
        ("url", "url", "http://phish.test/login.php?id=7"),
    ),
    "ip.eml": (_message("ip", received_ip="198.51.100.23"), ("client-ip", "ipv4", "198.51.100.23")),
    "cidr.eml": (
        _message("cidr", received_ip="203.0.113.77"),
        ("client-ip", "cidr", "203.0.113.0/24"),
    ),
    "email.eml": (
        _message("email", sender="Mallory <attacker@BAD-SENDER.test>"),
        ("from", "email", "Attacker@bad-sender.test"),
    ),
    "hash.eml": (
        _message("hash", attachment=PAYLOAD),
        ("attachment", "sha256", hashlib.sha256(PAYLOAD).hexdigest()),
    ),
}


@pytest.fixture
def polled(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A hub with the pulse, a source ``otx`` on it, polled once; the messages in a folder."""
    env = {
        **os.environ,
        "FEEDGATE_HUB_DB": str(tmp_path / "hub.db"),
        "FEEDGATE_DB": str(tmp_path / "feeds.db"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "NO_PROXY": "127.0.0.1",
    }
    pulse_file = tmp_path / "pulse.json"
    pulse_file.write_text(json.dumps(_pulse()))
    imported = run(env, "hub", "pulse", "import", str(pulse_file))
    assert imported.returncode == 0, imported.stderr
    key = run(env, "hub", "user", "add", "gateway", "--subscribe", "AlienVault").stdout.strip()
    hub = subprocess.Popen(
        [FEEDGATE, "hub", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert hub.stdout is not None
        port = re.search(r":(\d+) ", hub.stdout.readline()).group(1)  # type: ignore[union-attr]
        env["OTX_KEY"] = key
        added = run(
            env,
            *("source", "add", "otx", "--hostname", "127.0.0.1", "--port", port, "--no-https"),
            *("--poll-path", "/taxii/poll", "--collection", "user_AlienVault"),
            *("--username-env", "OTX_KEY", "--password-env", "OTX_KEY", "--age", "30d"),
        )
        assert added.returncode == 0, added.stderr
        poll = run(env, "poll", "otx")
        assert poll.returncode == 0, poll.stderr
        assert "6 observables read" in poll.stdout
        folder = tmp_path / "mail"
        folder.mkdir()
        for name, (raw, _expected) in MESSAGES.items():
            (folder / name).write_bytes(raw)
        yield env, folder
    finally:
        hub.send_signal(signal.SIGINT)
        hub.wait(timeout=10)


def _scan(env: dict[str, str], *args: str) -> dict[str, dict[str, Any]]:
    done = run(env, "scan", "--json", *args)
    assert done.returncode == 0, done.stderr
    verdicts = [json.loads(line) for line in done.stdout.splitlines()]
    return {Path(v["message"]).name: v for v in verdicts}


def test_each_observable_is_caught_in_its_part_and_the_source_switch_and_exceptions_apply(
    polled: tuple[dict[str, str], Path],
) -> None:
    env, folder = polled
    verdicts = _scan(env, str(folder))
    assert set(verdicts) == set(MESSAGES)
    for name, (_raw, expected) in MESSAGES.items():
        verdict = verdicts[name]
        if expected is None:
            assert verdict["action"] == "deliver" and verdict["matches"] == [], name
            continue
        assert verdict["action"] == "quarantine", name
        assert verdict["rules"] == ["threat-feeds"], name
        found = {(m["part"], m["kind"], m["value"]) for m in verdict["matches"]}
        assert expected in found, (name, found)
        match = next(m for m in verdict["matches"] if m["value"] == expected[2])
        assert match["source"] == "otx"
        assert match["context"]["package_title"] == PULSE_TITLE
        assert match["seen"]
    # The defanged URL is reported as the message wrote it.
    url_match = verdicts["url.eml"]["matches"][0]
    assert "phish[.]test" in url_match["seen"] or "hxxp" in url_match["seen"]

    # An exception wins over the feed: the domain's message is delivered, the match reported.
    assert (
        run(env, "exception", "add", "evil-mail.example", "--note", "our partner").returncode == 0
    )
    after = _scan(env, str(folder / "domain.eml"), str(folder / "url.eml"))
    assert after["domain.eml"]["action"] == "deliver"
    assert after["domain.eml"]["excepted"][0]["exception"] == "evil-mail.example"
    assert after["url.eml"]["action"] == "quarantine"

    # A disabled source enforces nothing.
    assert run(env, "source", "disable", "otx").returncode == 0
    disabled = _scan(env, str(folder))
    assert {v["action"] for v in disabled.values()} == {"deliver"}
    assert run(env, "source", "enable", "otx").returncode == 0
    assert _scan(env, str(folder / "hash.eml"))["hash.eml"]["action"] == "quarantine"


def test_the_plain_output_and_the_hits_report(polled: tuple[dict[str, str], Path]) -> None:
    env, folder = polled
    plain = run(env, "scan", str(folder / "ip.eml"), str(folder / "clean.eml"))
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    ip_line = next(line for line in lines if "ip.eml" in line)
    assert "quarantine" in ip_line
    assert "client-ip ipv4 198.51.100.23 (otx: " + PULSE_TITLE + ")" in plain.stdout
    assert any("clean.eml" in line and "deliver" in line for line in lines)

    # --no-log writes nothing to the match log; a logged scan counts in `feedgate hits`.
    assert run(env, "scan", "--no-log", str(folder / "hash.eml")).returncode == 0
    hits = run(env, "hits", "--format", "json", "--since", "1d")
    assert hits.returncode == 0, hits.stderr
    report = json.loads(hits.stdout)
    text = json.dumps(report)
    assert "198.51.100.23" in text
    assert hashlib.sha256(PAYLOAD).hexdigest() not in text


def test_a_missing_file_is_exit_1_and_the_others_are_still_scanned(
    polled: tuple[dict[str, str], Path],
) -> None:
    env, folder = polled
    done = run(env, "scan", "--json", str(folder / "nope.eml"), str(folder / "ip.eml"))
    assert done.returncode == 1
    assert "nope.eml" in done.stderr
    assert [json.loads(line)["action"] for line in done.stdout.splitlines()] == ["quarantine"]
    raw = MESSAGES["cidr.eml"][0]
    piped = subprocess.run(
        [FEEDGATE, "scan", "--json", "-"], env=env, input=raw, capture_output=True, timeout=120
    )
    assert piped.returncode == 0
    verdict = json.loads(piped.stdout)
    assert verdict["message"] == "-" and verdict["action"] == "quarantine"
    # --client-ip replaces the Received header's address.
    given = run(env, "scan", "--json", "--client-ip", "192.0.2.1", str(folder / "cidr.eml"))
    assert json.loads(given.stdout)["action"] == "deliver"
    assert run(env, "scan", "--client-ip", "not-an-ip", str(folder / "ip.eml")).returncode == 2

"""``feedgate serve`` runs the retro-scan beside the scheduler: a poll written while it serves
is matched against the mail index within seconds (the issue: within a minute), and the finding
is on the REST API."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from retro_helpers import Cli, message, obs, open_store, poll

from feedgate.feeds import secrets
from feedgate.observables import Kind

TOKEN = "test-token-0123456789abcdefghijklmnop"


def test_serve_finds_a_delivered_message_after_a_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = secrets.generate_key()
    monkeypatch.setenv(secrets.KEY_ENV, key)
    cli = Cli(tmp_path, key)
    cli.ok(  # port 9 on loopback: the scheduler's own polls fail at once; the test polls
        "source", "add", "otx", "--hostname", "127.0.0.1", "--port", "9", "--no-https",
        "--poll-path", "/taxii/poll", "--collection", "c",
    )  # fmt: skip
    mail = tmp_path / "m.eml"
    mail.write_bytes(message("http://www.evil.example/x\n", message_id="<served@example.org>"))
    cli.ok("scan", "--index", str(mail))
    server = subprocess.Popen(
        [sys.executable, "-m", "feedgate.cli", "serve", "--port", "0"],
        env={**cli.vars, "FEEDGATE_API_TOKEN": TOKEN, "NO_PROXY": "127.0.0.1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    feeds = open_store(str(cli.db))
    try:
        assert server.stdout is not None
        lines = []
        while not any(line.startswith("API:") for line in lines):
            line = server.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        found = re.search(r"API:\s+(http://\S+)/api/v1/", "".join(lines))
        assert found, lines
        base, auth = found.group(1), {"Authorization": f"Bearer {TOKEN}"}
        poll(feeds, obs(Kind.DOMAIN, "evil.example"), at=datetime.now(UTC))
        rows: list[dict[str, object]] = []
        deadline = time.monotonic() + 60  # the server's own 5 s cycle, on a busy machine
        while not rows and time.monotonic() < deadline:
            rows = httpx.get(f"{base}/api/v1/retro", headers=auth, trust_env=False).json()
            if not rows:
                time.sleep(0.25)  # waiting on another process's cycle, not ordering ours
        assert [(r["message_id"], r["value"], r["action"]) for r in rows] == [
            ("<served@example.org>", "evil.example", "quarantine")
        ]
        assert any(e.message.startswith("retro: ") for e in feeds.log_entries("otx"))
    finally:
        feeds.close()
        server.terminate()
        server.communicate(timeout=30)

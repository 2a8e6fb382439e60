"""``feedgate scan --index``, ``feedgate retro --run`` and ``GET /api/v1/retro`` on one database:
the CLI and the API list the same findings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from retro_helpers import Cli, message, obs, open_store, poll

from feedgate.asgi_server import serving
from feedgate.feeds import secrets
from feedgate.feeds.log import ThreatFeedLog
from feedgate.observables import Kind
from feedgate.web.api import create_api

TOKEN = "t" * 32


def test_cli_and_api_agree_on_retro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = secrets.generate_key()
    monkeypatch.setenv(secrets.KEY_ENV, key)
    cli = Cli(tmp_path, key)
    cli.ok(
        "source", "add", "otx", "--hostname", "otx.example", "--poll-path", "/taxii/poll",
        "--collection", "c",
    )  # fmt: skip
    mail = tmp_path / "m1.eml"
    mail.write_bytes(message("http://www.evil.example/x\n", message_id="<m1@example.org>"))
    assert ": deliver" in cli.ok("scan", "--index", str(mail))
    (tmp_path / "m2.eml").write_bytes(message("http://www.evil.example/y\n"))
    cli.ok("scan", str(tmp_path / "m2.eml"))  # not indexed: no --index
    assert cli.ok("retro").startswith("no retro findings since ")

    feeds = open_store(str(cli.db))
    try:
        poll(feeds, obs(Kind.DOMAIN, "evil.example"), at=datetime.now(UTC))
        ran = cli.run("retro", "--run", "--format", "jsonl")
        assert ran.returncode == 0, ran.stderr
        assert "retro-scan: 1 new finding" in ran.stderr
        rows = [json.loads(line) for line in ran.stdout.splitlines()]
        assert [(r["message_id"], r["kind"], r["value"], r["action"]) for r in rows] == [
            ("<m1@example.org>", "domain", "evil.example", "quarantine")
        ]
        assert cli.jsonl("retro", "--run", "--format", "jsonl") == rows  # nothing new, same rows
        table = cli.ok("retro").splitlines()
        assert table[0].split()[:4] == ["FOUND", "PASSED", "WOULD", "MODE"]
        assert "<m1@example.org>" in table[1] and "quarantine" in table[1]
        app = create_api(feeds, ThreatFeedLog(feeds, write_file=False), TOKEN)
        with (
            serving(app) as url,
            httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False
            ) as api,
        ):
            assert api.get("/api/v1/retro").json() == rows
            assert api.get("/api/v1/retro", params={"since": "all", "source": "otx"}).json() == rows
            assert api.get("/api/v1/retro", params={"source": "other"}).json() == []
            refused = api.get("/api/v1/retro", params={"since": "soon"})
            assert refused.status_code == 400 and refused.json()["field"] == "since"
            assert api.get("/api/v1/").json()["links"]["retro"] == "/api/v1/retro"
            assert "/api/v1/retro" in api.get("/api/v1/openapi.json").json()["paths"]
        bad = cli.run("retro", "--since", "soon")
        assert bad.returncode == 2 and "since (--since)" in bad.stderr
    finally:
        feeds.close()

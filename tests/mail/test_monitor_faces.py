"""Monitor mode as the admin meets it, through the real faces: ``feedgate source edit NAME
--mode monitor``, then ``feedgate scan`` says what the source would have done (a line of its
own) and ``feedgate hits`` and ``GET /api/v1/hits`` (one function, one answer) count the hit as
monitored, apart from the enforced ones; ``--mode enforce`` makes the same message act and
count as enforced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from policy_faces import Cli, add_sources

from feedgate.asgi_server import serving
from feedgate.feeds import secrets
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.store import FeedStore
from feedgate.observables import Kind, LayeredContext, Observable
from feedgate.web.api import create_api

TOKEN = "monitor-test-token-0123456789abcdef01"
SOURCE = "otx-demo"
TITLE = "Invoice phishing wave"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    key = secrets.generate_key()
    monkeypatch.setenv(secrets.KEY_ENV, key)
    made = Cli(tmp_path)
    made.vars[secrets.KEY_ENV] = key
    return made


@pytest.fixture
def feeds(cli: Cli) -> Iterator[FeedStore]:
    store, _policy = cli.stores()
    add_sources(store, SOURCE)
    at = datetime.now(UTC).replace(microsecond=0)
    context = LayeredContext({"package_title": TITLE}, {"indicator_title": "bad.example"})
    with store.segment(SOURCE) as seg:
        seg.upsert([Observable(Kind.DOMAIN, "bad.example", None, context)], at)
        seg.finish(at)
    yield store
    store.close()


@pytest.fixture
def api(feeds: FeedStore) -> Iterator[httpx.Client]:
    app = create_api(feeds, ThreatFeedLog(feeds, write_file=False), TOKEN)
    with (
        serving(app) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False
        ) as client,
    ):
        yield client


def invoice(folder: Path) -> Path:
    msg = EmailMessage()
    msg["From"] = "billing@sender.test"
    msg["Subject"] = "your invoice"
    msg["Message-ID"] = "<invoice.1@sender.test>"
    msg.set_content("Pay here: http://www.bad.example/pay\n")
    path = folder / "invoice.eml"
    path.write_bytes(bytes(msg))
    return path


def hits_agree(cli: Cli, api: httpx.Client, *args: str) -> dict[str, list[dict[str, object]]]:
    """``feedgate hits ARGS --format json`` and the same query to the API, asserted equal."""
    query = dict(zip(args[::2], args[1::2], strict=True))
    params = {k.removeprefix("--"): v for k, v in query.items()}
    from_cli = json.loads(cli.ok("hits", *args, "--format", "json"))
    from_api = api.get("/api/v1/hits", params=params).json()
    assert from_cli == from_api
    result: dict[str, list[dict[str, object]]] = from_api
    return result


def test_monitor_mode_would_have_in_scan_and_hits_then_enforce(
    cli: Cli, feeds: FeedStore, api: httpx.Client, tmp_path: Path
) -> None:
    assert cli.ok("source", "edit", SOURCE, "--mode", "monitor").strip() == (
        f"updated source {SOURCE}: mode enforce -> monitor"
    )
    path = invoice(tmp_path)
    assert cli.ok("scan", str(path)).splitlines() == [
        f"{path}: deliver",
        f"{path}: would have quarantine [threat-feeds]: url domain bad.example"
        f" ({SOURCE}: {TITLE}, monitor mode)",
    ]
    [shown] = json.loads(cli.ok("scan", "--no-log", "--json", str(path)))["monitored"]
    assert (shown["value"], shown["rules"], shown["action"]) == (
        "bad.example",
        ["threat-feeds"],
        "quarantine",
    )

    monitored = hits_agree(cli, api, "--since", "all")
    assert [(s["source"], s["mode"], s["hits"], s["messages"]) for s in monitored["sources"]] == [
        (SOURCE, "monitor", 1, 1)
    ]
    assert [(t["mode"], t["value"]) for t in monitored["top"]] == [("monitor", "bad.example")]
    assert hits_agree(cli, api, "--since", "all", "--mode", "enforce") == {
        "sources": [],
        "top": [],
    }
    table = cli.ok("hits", "--since", "all").splitlines()
    assert table[1].split() == ["SOURCE", "MODE", "HITS", "MESSAGES", "LAST"]
    assert table[2].split()[:4] == [SOURCE, "monitor", "1", "1"]
    assert table[-1].startswith("mode monitor: hits of a source in monitor mode")

    cli.ok("source", "edit", SOURCE, "--mode", "enforce")
    assert cli.ok("scan", str(path)).splitlines() == [
        f"{path}: quarantine [threat-feeds]: url domain bad.example ({SOURCE}: {TITLE})"
    ]
    both = hits_agree(cli, api, "--since", "all")
    assert sorted((s["mode"], s["hits"]) for s in both["sources"]) == [
        ("enforce", 1),
        ("monitor", 1),
    ]
    enforced = hits_agree(cli, api, "--since", "all", "--mode", "Enforce")
    assert [(s["source"], s["mode"], s["hits"]) for s in enforced["sources"]] == [
        (SOURCE, "enforce", 1)
    ]
    only = cli.ok("hits", "--since", "all", "--mode", "monitor").splitlines()
    assert only[0].endswith(" in monitor mode:") and only[2].split()[:3] == [
        SOURCE,
        "monitor",
        "1",
    ]


def test_a_mode_that_is_no_mode_is_refused_alike_by_both_faces(
    cli: Cli, feeds: FeedStore, api: httpx.Client
) -> None:
    why = "'watch' is not a mode: give enforce or monitor (none: both)"
    assert cli.error("hits", "--mode", "watch") == f"mode (--mode): {why}"
    answer = api.get("/api/v1/hits", params={"mode": "watch"})
    assert answer.status_code == 400
    assert answer.json() == {"detail": f"mode: {why}", "field": "mode"}

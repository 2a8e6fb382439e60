"""Monitor mode per source: its matches are reported as "would have" (``Verdict.monitored``),
take no action, are logged so; switching the source to enforce makes the same message act.
The mode is written through make_source by the CLI and the REST API alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from retro_helpers import Cli, Clock, message, obs, open_store, poll

from feedgate.asgi_server import serving
from feedgate.feeds import secrets
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.sources import SourceError, make_source
from feedgate.feeds.store import FeedStore
from feedgate.mail.matcher import Matcher
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.scanner import Scanner
from feedgate.mail.schema import match_log
from feedgate.observables import Kind
from feedgate.web.api import create_api

TOKEN = "t" * 32


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = secrets.generate_key()
    monkeypatch.setenv(secrets.KEY_ENV, value)
    return value


@pytest.fixture
def store(tmp_path: Path, key: str) -> Iterator[FeedStore]:
    s = open_store(str(tmp_path / "feeds.db"), "otx", mode="monitor")
    yield s
    s.close()


def test_make_source_takes_the_modes_in_any_case_and_refuses_others() -> None:
    base = {"name": "s", "hostname": "h.example", "collection": "c"}
    assert make_source(base).mode == "enforce"
    assert make_source({**base, "mode": " Monitor "}).mode == "monitor"
    with pytest.raises(SourceError) as refused:
        make_source({**base, "mode": "watch"})
    assert refused.value.field == "mode"
    assert "give enforce" in refused.value.message and "monitor" in refused.value.message


def log_rows(store: FeedStore) -> list[tuple[str, str | None, str, str, str]]:
    m = match_log
    query = sa.select(m.c.message_id, m.c.rule, m.c.action, m.c.mode, m.c.value).order_by(m.c.id)
    with store.engine.connect() as conn:
        return [(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(query)]


def test_a_monitor_source_would_have_and_enforce_acts(store: FeedStore) -> None:
    clock = Clock()
    policy = PolicyStore(store.engine, store.source_names)
    scanner = Scanner(
        store,
        policy,
        now=clock.now,
        matcher=Matcher(store, clock=clock.tick),
        clock=clock.tick,
    )
    poll(store, obs(Kind.DOMAIN, "bad.example"), at=clock.now())
    raw = message("see http://www.bad.example/login\n", message_id="<m1@example.org>")

    verdict = scanner.scan(raw)
    assert verdict.action == "deliver" and verdict.rules == () and verdict.matches == ()
    assert [(m.source, m.kind, m.value) for m in verdict.monitored] == [
        ("otx", "domain", "bad.example")
    ]
    assert verdict.monitored_rules == (("threat-feeds",),)  # what would have decided
    shown = verdict.to_dict()["monitored"]
    assert shown[0]["value"] == "bad.example" and shown[0]["rules"] == ["threat-feeds"]
    assert log_rows(store) == [  # what the rule would have done; nothing was
        ("<m1@example.org>", "threat-feeds", "quarantine", "monitor", "bad.example")
    ]

    source = store.get_source("otx")
    assert source is not None
    store.update_source(dataclasses.replace(source, mode="enforce"))
    clock.advance(timedelta(seconds=2))  # past the scanner's check interval (1 s)
    verdict = scanner.scan(raw)
    assert verdict.action == "quarantine" and verdict.monitored == ()
    assert [m.value for m in verdict.matches] == ["bad.example"]
    assert log_rows(store)[-1] == (
        "<m1@example.org>",
        "threat-feeds",
        "quarantine",
        "enforce",
        "bad.example",
    )


def test_exceptions_and_the_gate_still_come_before_monitor(store: FeedStore) -> None:
    clock = Clock()
    policy = PolicyStore(store.engine, store.source_names)
    policy.add_exception("partner.example", "ours")
    scanner = Scanner(store, policy, now=clock.now, log=False)
    poll(store, obs(Kind.DOMAIN, "partner.example"), obs(Kind.DOMAIN, "google.com"), at=clock.now())
    verdict = scanner.scan(message("http://partner.example/ and http://google.com/\n"))
    assert verdict.monitored == ()
    assert [e.match.value for e in verdict.excepted] == ["partner.example"]
    assert [s.match.value for s in verdict.suppressed] == ["google.com"]


def test_the_cli_sets_shows_lists_and_edits_the_mode(tmp_path: Path, key: str) -> None:
    cli = Cli(tmp_path, key)
    out = cli.ok(
        "source", "add", "new", "--hostname", "feed.example", "--poll-path", "/taxii/poll",
        "--collection", "c", "--mode", "monitor",
    )  # fmt: skip
    assert out.strip().endswith(", monitor mode")
    shown = dict(
        (line.split(":", 1)[0], line.split(":", 1)[1].strip())
        for line in cli.ok("source", "show", "new").splitlines()
    )
    assert shown["mode"] == "monitor"
    listed = cli.ok("source", "list").splitlines()
    assert listed[0].split()[:3] == ["NAME", "ENABLED", "MODE"]
    assert listed[1].split()[:3] == ["new", "yes", "monitor"]
    assert cli.ok("source", "edit", "new", "--mode", "enforce").strip() == (
        "updated source new: mode monitor -> enforce"
    )
    refused = cli.run("source", "edit", "new", "--mode", "watch")
    assert refused.returncode == 2 and "'watch' is not one of 'enforce', 'monitor'" in (
        refused.stderr
    )


def test_the_rest_api_shows_and_changes_the_mode(store: FeedStore) -> None:
    app = create_api(store, ThreatFeedLog(store, write_file=False), TOKEN)
    with (
        serving(app) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, trust_env=False
        ) as api,
    ):
        assert api.get("/api/v1/sources/otx").json()["mode"] == "monitor"
        changed = api.patch("/api/v1/sources/otx", json={"mode": "enforce"})
        assert changed.status_code == 200 and changed.json()["mode"] == "enforce"
        refused = api.patch("/api/v1/sources/otx", json={"mode": "watch"})
        assert refused.status_code == 400 and refused.json()["field"] == "mode"
        schema = api.get("/api/v1/openapi.json").json()["components"]["schemas"]
        assert schema["Source"]["properties"]["mode"]["enum"] == ["enforce", "monitor"]
    assert store.source_modes() == {"otx": "enforce"}

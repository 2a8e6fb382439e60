"""The observables' kind filter, as the CLI and the REST API take it: one rule for both (any case
is a kind; another word is refused with the same one-line message), over a real socket and a
real CLI process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_client import api_client

from feedgate import db
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.observables import Kind, Observable

TOKEN = "filters-token"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FeedStore]:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    store = FeedStore(db.engine(str(tmp_path / "feeds.db")))
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    with store.segment("otx") as segment:
        segment.upsert(
            [
                Observable(Kind.IPV4, "198.51.100.7", None, {}),
                Observable(Kind.DOMAIN, "evil.example", None, {}),
            ],
            datetime.now(UTC),
        )
    yield store
    store.close()


@pytest.fixture
def api(store: FeedStore) -> Iterator[httpx.Client]:
    with api_client(store, TOKEN) as client:
        yield client


def cli(store: FeedStore, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEEDGATE_DB": str(store.engine.url.database)}
    return subprocess.run(
        [sys.executable, "-m", "feedgate.cli", "observables", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def values(rows: list[dict[str, Any]]) -> list[str]:
    return [row["value"] for row in rows]


@pytest.mark.parametrize("spelling", ["IPV4", "IPv4", "ipv4"])
def test_a_kind_in_any_case_is_that_kind_in_the_cli_and_the_api(
    store: FeedStore, api: httpx.Client, spelling: str
) -> None:
    """``--kind IPV4`` was refused by the CLI (click's Choice is case-sensitive)."""
    listed = cli(store, "--kind", spelling)
    assert listed.returncode == 0, listed.stderr
    assert values([json.loads(line) for line in listed.stdout.splitlines()]) == ["198.51.100.7"]
    answer = api.get("/api/v1/observables", params={"kind": spelling})
    assert answer.status_code == 200, answer.text
    assert values(answer.json()) == ["198.51.100.7"]


def test_an_unknown_kind_is_refused_by_both_with_the_same_message(
    store: FeedStore, api: httpx.Client
) -> None:
    """The API answered 200 ``[]`` for ``kind=foo``, where the CLI refused it."""
    answer = api.get("/api/v1/observables", params={"kind": "foo"})
    assert answer.status_code == 400
    body = answer.json()
    assert body["field"] == "kind"
    assert "foo" in body["detail"] and "ipv4" in body["detail"]
    refused = cli(store, "--kind", "foo")
    assert refused.returncode == 2 and refused.stdout == ""
    (line,) = [line for line in refused.stderr.splitlines() if "foo" in line]
    assert line.endswith(body["detail"]), (line, body["detail"])

"""`feedgate observables` and `feedgate log` as a user runs them (real processes)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.observables import Kind, Observable
from feedgate.stix import ReadStats, read_observables

T0 = datetime(2026, 11, 1, tzinfo=UTC)

OBSERVABLES = [
    Observable(Kind.IPV4, "198.51.100.7", None, {"package_title": "Pulse A", "confidence": 80}),
    Observable(Kind.IPV6, "2001:db8::1", None, {"package_title": "Pulse A"}),
    Observable(Kind.CIDR, "203.0.113.0/24", None, {}),
    Observable(Kind.CIDR, "2001:db8::/32", None, {}),
    Observable(Kind.DOMAIN, "evil.example", None, {"indicator_title": "evil.example from x"}),
    Observable(Kind.URL, "http://evil.example/it's\\here?q=1", None, {}),
    Observable(Kind.EMAIL, "bad@evil.example", None, {}),
    Observable(Kind.MD5, "d41d8cd98f00b204e9800998ecf8427e", None, {}),
    Observable(Kind.SHA1, "da39a3ee5e6b4b0d3255bfef95601890afd80709", None, {}),
    Observable(
        Kind.SHA256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", None, {}
    ),
    Observable(Kind.OTHER, "Global\\Evil", "mutex:name", {}),
]
#: Kind other with a STIX 1 type: no STIX 2 pattern, left out of the bundle.
MUTEX_STIX1 = Observable(Kind.OTHER, "EvilMutex", "MutexObjectType", {})


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    path = tmp_path / "feeds.db"
    store = FeedStore(engine(str(path)))
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    store.add_source(Source(name="partner", hostname="p.example", collection="c"))
    soon = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with store.segment("otx") as seg:
        seg.upsert([*OBSERVABLES, MUTEX_STIX1], T0)
    with store.segment("partner") as seg:
        seg.upsert(
            [
                Observable(Kind.IPV4, "192.0.2.1", None, {"valid_until": soon}),
                Observable(Kind.IPV4, "192.0.2.2", None, {}),
            ],
            datetime.now(UTC),
        )
    store.expire("partner", datetime.now(UTC))
    with store.segment("partner") as seg:  # one expired by age
        seg.upsert([Observable(Kind.IPV4, "192.0.2.3", None, {})], T0 - timedelta(days=400))
    assert store.expire("partner", datetime.now(UTC)) == 1
    store.close()
    return path


def run(
    *args: str, db: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "FEEDGATE_DB"}
    if db is not None:
        full_env["FEEDGATE_DB"] = str(db)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "feedgate.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
    )


def test_jsonl_by_default_with_filters(db: Path) -> None:
    result = run("observables", db=db)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == len(OBSERVABLES) + 1 + 2  # the expired one left out
    (first,) = [r for r in rows if r["value"] == "198.51.100.7"]  # storage order is key order
    assert first["kind"] == "ipv4" and first["value"] == "198.51.100.7"
    assert first["source"] == "otx" and first["package_title"] == "Pulse A"
    assert first["first_seen"] == "2026-11-01T00:00:00Z" and first["expired"] is False

    only = run("observables", "--source", "partner", "--kind", "ipv4", db=db)
    assert sorted(json.loads(x)["value"] for x in only.stdout.splitlines()) == [
        "192.0.2.1",
        "192.0.2.2",
    ]
    everything = run("observables", "--source", "partner", "--all", "--db", str(db))
    assert len(everything.stdout.splitlines()) == 3
    found = run("observables", "--search", "PULSE a", "--limit", "1", db=db)
    assert [json.loads(x)["value"] for x in found.stdout.splitlines()] in (
        ["198.51.100.7"],
        ["2001:db8::1"],
    )
    both = run("observables", "--search", "PULSE a", db=db)
    assert sorted(json.loads(x)["value"] for x in both.stdout.splitlines()) == [
        "198.51.100.7",
        "2001:db8::1",
    ]


def test_table_and_csv(db: Path) -> None:
    table = run("observables", "--format", "table", "--kind", "domain", db=db)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["KIND", "VALUE", "SOURCE"]
    assert lines[1].split()[:2] == ["domain", "evil.example"]
    out = run("observables", "--format", "csv", "--source", "otx", db=db)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == len(OBSERVABLES) + 1
    (ip,) = [r for r in rows if r["value"] == "198.51.100.7"]
    assert ip["kind"] == "ipv4" and ip["confidence"] == "80"


def test_csv_of_several_sources_says_where_and_when_each_row_was_seen(db: Path) -> None:
    out = run("observables", "--format", "csv", "--all", db=db)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0])[-4:] == ["source", "first_seen", "last_seen", "expired"]
    by_value = {row["value"]: row for row in rows}
    assert by_value["198.51.100.7"]["source"] == "otx"
    assert by_value["192.0.2.1"]["source"] == "partner"
    assert by_value["192.0.2.3"]["expired"] == "true"
    assert by_value["192.0.2.1"]["expired"] == "false"
    assert by_value["198.51.100.7"]["first_seen"].startswith("2026-11-01T00:00:00")


def test_stix2_bundle_reads_back_to_the_same_observables(db: Path, tmp_path: Path) -> None:
    result = run("observables", "--source", "otx", "--format", "stix2", db=db)
    assert result.returncode == 0, result.stderr
    bundle = json.loads(result.stdout)
    assert bundle["type"] == "bundle" and bundle["id"].startswith("bundle--")
    indicators = bundle["objects"]
    assert all(o["type"] == "indicator" and o["spec_version"] == "2.1" for o in indicators)
    assert "1 observable(s) of kind other left out" in result.stderr
    path = tmp_path / "bundle.json"
    path.write_text(result.stdout, encoding="utf-8")
    stats = ReadStats()
    back = list(read_observables(str(path), stats=stats))
    assert not stats.skipped
    assert sorted((o.kind, o.value, o.original_type) for o in back) == sorted(
        (o.kind, o.value, o.original_type) for o in OBSERVABLES
    )
    # Ids are deterministic: the same export twice gives the same indicator ids.
    again = json.loads(run("observables", "--source", "otx", "--format", "stix2", db=db).stdout)
    assert [o["id"] for o in again["objects"]] == [o["id"] for o in indicators]
    # An empty selection is still a valid bundle.
    empty = run("observables", "--search", "nothing-like-this", "--format", "stix2", db=db)
    assert json.loads(empty.stdout)["objects"] == []


def test_errors(db: Path, tmp_path: Path) -> None:
    unknown = run("observables", "--source", "nope", db=db)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "feedgate: error: no source named nope"
    bad = run("observables", "--format", "xml", db=db)
    assert bad.returncode == 2
    url = run("observables", "--db", "mysql://u:hunter2@h/db")
    assert url.returncode == 1 and "hunter2" not in url.stderr
    assert url.stderr.startswith("feedgate: error: ") and len(url.stderr.splitlines()) == 1


def test_log_prints_rows_in_the_gateway_style(db: Path) -> None:
    store = FeedStore(engine(str(db)))
    store.add_log("otx", "info", "poll started", at=datetime(2026, 11, 28, 3, 40, 12, tzinfo=UTC))
    store.add_log("partner", "error", "poll failed: timed out")
    store.close()
    result = run("log", db=db)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == '2026-11-28T03:40:12Z Info: source "otx": poll started'
    assert lines[1].endswith(' Error: source "partner": poll failed: timed out')
    only = run("log", "--source", "partner", db=db)
    assert len(only.stdout.splitlines()) == 1


def test_log_follow_prints_new_rows_until_terminated(db: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FEEDGATE_DB"}
    env["FEEDGATE_DB"] = str(db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "feedgate.cli", "log", "--follow", "--source", "otx"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(30, proc.kill)  # readline below must not hang the suite
    watchdog.start()
    try:
        time.sleep(1.5)  # started and caught up
        store = FeedStore(engine(str(db)))
        store.add_log("otx", "warning", "appeared while following")
        store.add_log("partner", "info", "another source")
        store.close()
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until printed (the watchdog guards it)
        assert line.endswith(' Warning: source "otx": appeared while following\n')
    finally:
        watchdog.cancel()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    assert proc.stderr is not None and proc.stderr.read() == ""

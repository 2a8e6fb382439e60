"""``feedgate observables`` as an export: the same bytes as the shared writers make of each
stored observable, streamed from one query on SQLite and a real PostgreSQL (``any_db``), at a
rate near a bare read of the rows; a table too long for the screen goes through the pager."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feedgate import db
from feedgate.feeds import secrets
from feedgate.feeds.export import STORED_COLUMNS, as_observable
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.observables import EncodedContext, Kind, LayeredContext, Observable
from feedgate.output import make_writer
from pgserver import Database

SHARED = {"package_id": "pkg-1", "package_title": "Pulse «A»\n", "tlp": "amber"}
#: Contexts the shortcut must get exactly right, or leave to the reference way.
TRICKY: list[tuple[Kind, str, str | None, object]] = [
    (Kind.IPV4, "198.51.100.7", None, LayeredContext(SHARED, {"indicator_id": "i-1"})),
    (Kind.DOMAIN, "évil.example", None, LayeredContext(SHARED, {})),
    (Kind.URL, 'http://x.example/"q"\\', "URL", LayeredContext(SHARED, {"confidence": 80})),
    # own keys over the shared ones: own wins, in the shared key's place
    (Kind.MD5, "d41d8cd98f00b204e9800998ecf8427e", None, LayeredContext(SHARED, {"tlp": "red"})),
    # keys the observable's own fields take
    (Kind.SHA1, "da39a3ee5e6b4b0d3255bfef95601890afd80709", None, {"source": "feed", "kind": 1}),
    (Kind.OTHER, "Global\\Evil", "", {"type": "mutex", "expired": "no"}),
    (Kind.OTHER, "CVE-2026-0001", "CVE", LayeredContext({"value": "x", "a": 1}, {"b": [1.5]})),
    # values JSON keeps as they are: floats, big numbers, nesting, a lone surrogate, controls
    (
        Kind.EMAIL,
        "bad@evil.example",
        None,
        {"n": 1e16, "big": 2**70, "list": [None, True, {"x": -0.0}], "odd": "\ud800\x1b[2J"},
    ),
    (Kind.IPV6, "2001:db8::1", None, EncodedContext('{"description":"from STIX 2","x":0.1}')),
    (Kind.CIDR, "203.0.113.0/24", None, {}),
]


@pytest.fixture
def store(any_db: Database, monkeypatch: pytest.MonkeyPatch) -> FeedStore:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    store = FeedStore(db.engine(any_db.url))
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    store.add_source(Source(name="partner", hostname="p.example", collection="c"))
    seen = datetime.now(UTC).replace(microsecond=123456)
    with store.segment("otx") as segment:
        segment.upsert([Observable(k, v, t, c) for k, v, t, c in TRICKY], seen)  # type: ignore[arg-type]
    with store.segment("partner") as segment:
        segment.upsert([Observable(Kind.IPV4, "192.0.2.1", None, {})], seen - timedelta(days=400))
    store.expire("partner", datetime.now(UTC))
    return store


def feedgate(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEEDGATE_DB": url}
    return subprocess.run(
        [sys.executable, "-m", "feedgate.cli", "observables", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def reference(store: FeedStore, fmt: str, live_only: bool) -> str:
    """What the shared writers make of each stored observable (the format of record)."""
    out = io.StringIO()
    write = make_writer(fmt, out, csv_extra=STORED_COLUMNS)
    for stored in store.iter_observables(live_only=live_only):
        write(as_observable(stored))
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
@pytest.mark.parametrize("everything", [False, True])
def test_the_export_writes_the_same_bytes_as_the_shared_writers(
    store: FeedStore, any_db: Database, fmt: str, everything: bool
) -> None:
    args = ["--format", fmt, *(["--all"] if everything else [])]
    result = feedgate(any_db.url, *args)
    assert result.returncode == 0, result.stderr
    # A lone surrogate has no UTF-8: written as its escape (the same text, to JSON).
    expected = reference(store, fmt, live_only=not everything)
    expected = expected.encode("utf-8", "backslashreplace").decode()
    if fmt != "csv":  # CSV quotes the newline of a title
        assert len(expected.splitlines()) == len(TRICKY) + everything + (fmt == "table")
    assert result.stdout == expected


def test_stix2_bundle_streams_every_pattern(store: FeedStore, any_db: Database) -> None:
    result = feedgate(any_db.url, "--format", "stix2", "--source", "otx")
    assert result.returncode == 0, result.stderr
    import json

    bundle = json.loads(result.stdout)
    assert len(bundle["objects"]) == len(TRICKY) - 2  # two of kind other have no STIX 2 path
    assert "2 observable(s) of kind other left out" in result.stderr


def table_on_a_terminal(env: dict[str, str]) -> None:
    """``feedgate observables --format table`` with a terminal (a pty) as its stdin and
    stdout, which nobody reads: what it shows stays unread."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "feedgate.cli", "observables", "--format", "table"],
            stdin=follower,
            stdout=follower,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 0, done.stderr


def test_a_table_longer_than_the_screen_goes_through_the_pager(
    store: FeedStore, any_db: Database, tmp_path: Path
) -> None:
    """A table of a million rows on a terminal ran for ten minutes and more."""
    paged = tmp_path / "paged.txt"
    pager = tmp_path / "pager"  # a pager that keeps what it is given
    pager.write_text(f"#!/bin/sh\ncat > '{paged}'\n")
    pager.chmod(0o755)
    env = {
        **os.environ,
        "FEEDGATE_DB": any_db.url,
        "PAGER": str(pager),
        "LINES": "5",
        "COLUMNS": "120",
    }
    table_on_a_terminal(env)
    lines = paged.read_text().rstrip("\n").splitlines()  # click's pager ends with a newline
    assert lines[0].split() == ["KIND", "VALUE", "SOURCE"]
    assert len(lines) == len(TRICKY) + 1
    # One that fits the screen is printed as it is.
    env["LINES"] = "50"
    paged.unlink()
    table_on_a_terminal(env)
    assert not paged.exists()

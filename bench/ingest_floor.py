"""Where a poll's CPU goes, and the floor under it: the budget behind bench/ingest.py's targets.

bench/ingest.py measures a whole poll against the anchor pipeline. This one takes the same poll
apart, so that a target such as "50,000 observables/s" can be checked against what the machine
can do at all. On one hub seeded like ingest.py's, it measures, in this process and one core at
a time (CPU seconds, best of --repeat):

- hub: the hub's CPU while it serves the whole window (our client fetching the raw parts);
- receive: our client's CPU for that fetch (HTTP, paging);
- parse: libxml2 alone over those bytes (streaming, hardened options, no tree kept) — C, a floor
  no STIX 1 reader on lxml goes under;
- read: feedgate's streaming reader (``read_observables``) over the same parts, parse included
  (the poll's workers read ranges of a part whole, a little faster, and pack what they read);
- store: ``FeedStore`` segments (upsert, then commit) of what was read, one per part, as lists
  of observables (the poll hands the store the workers' packed columns, a little cheaper);
- SQLite: the cheapest keyed store of the same rows — ``executemany`` of (digest, kind, value,
  context) into a ``WITHOUT ROWID`` table keyed by digest, sorted, one transaction — a floor
  for any store that keeps an observable's identity and context;
- then the whole poll (``poll_source``, parse workers and all, in its own process, as ingest.py
  runs it): wall time, and CPU of its process tree plus the hub's.

and prints each as µs per observable read, beside the CPU budget a rate target leaves: on N
cores, a rate R observables/s allows N / R seconds of CPU per observable, for everything (the
hub on the same machine included), and only if every core is busy from the first to the last
moment.

    .venv/bin/python bench/ingest_floor.py [--indicators 200000] [--target 50000]

Talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from lxml import etree

from feedgate import db
from feedgate.feeds.secrets import KEY_ENV, generate_key
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.observables import Observable, context_json
from feedgate.stix import ReadStats, batched, read_observables
from feedgate.taxii.client import TaxiiClient
from ingest import AGE_DAYS, COLLECTION, POLL_PATH, SEGMENT_DAYS, Hub, feedgate_command, prepare
from ingest import run as run_contender

_PACKAGE = "{http://stix.mitre.org/stix-1}STIX_Package"
# feedgate.xml's hardened options, spelled out: this is the parse every reader here pays.
_HARDENED = {
    "resolve_entities": False,
    "load_dtd": False,
    "no_network": True,
    "remove_comments": True,
    "remove_pis": True,
}


def best_cpu(repeat: int, work: Callable[[], object]) -> float:
    """The least CPU time of ``repeat`` runs of ``work`` in this process."""
    best = float("inf")
    for _ in range(repeat):
        began = time.process_time()
        work()
        best = min(best, time.process_time() - began)
    return best


def fetch(hub: Hub) -> tuple[list[bytes], float, float]:
    """The raw parts of the whole window; our CPU and the hub's for it."""
    hub_process = psutil.Process(hub.process.pid)
    hub_before = sum(hub_process.cpu_times()[:2])
    end = datetime.now(UTC)
    began = time.process_time()
    with TaxiiClient(
        host=hub.host, port=hub.port, username=hub.key, password="x", timeout=(10.0, 3600.0)
    ) as client:
        parts = list(
            client.poll_raw(COLLECTION, end - timedelta(days=AGE_DAYS), end, uri=POLL_PATH)
        )
    ours = time.process_time() - began
    return parts, ours, sum(hub_process.cpu_times()[:2]) - hub_before


def parse_only(parts: list[bytes]) -> None:
    for part in parts:
        for _, element in etree.iterparse(
            io.BytesIO(part), events=("end",), tag=_PACKAGE, **_HARDENED
        ):
            element.clear()


def read_all(parts: list[bytes]) -> list[list[Observable]]:
    stats = ReadStats()
    return [list(read_observables(part, stats=stats)) for part in parts]


def store_all(read: list[list[Observable]], workdir: Path) -> float:
    """CPU seconds of storing ``read`` into a fresh store (its creation not counted)."""
    path = workdir / f"floor-store-{time.monotonic_ns()}.db"
    store = FeedStore(db.engine(str(path)))
    try:
        store.add_source(Source(name="floor", hostname="127.0.0.1", collection=COLLECTION))
        seen = datetime.now(UTC)
        began = time.process_time()
        for observables in read:
            with store.segment("floor") as segment:
                for batch in batched(observables):
                    segment.upsert(batch, seen)
                segment.finish(seen)
        return time.process_time() - began
    finally:
        store.close()


def sqlite_rows(read: list[list[Observable]]) -> list[tuple[bytes, str, str, str]]:
    """(digest, kind, value, context JSON) per distinct observable, in key order: made ahead,
    so that only SQLite's own work (and the driver's binding) is timed."""
    rows: dict[bytes, tuple[bytes, str, str, str]] = {}
    for observables in read:
        for obs in observables:
            key = hashlib.sha256(f"{obs.kind.value}\0{obs.value}".encode()).digest()
            rows[key] = (key, obs.kind.value, obs.value, context_json(obs.context))
    return [rows[key] for key in sorted(rows)]


def sqlite_floor(rows: list[tuple[bytes, str, str, str]], workdir: Path) -> None:
    path = workdir / f"floor-sqlite-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE o (digest BLOB PRIMARY KEY, kind TEXT, value TEXT, context TEXT)"
            " WITHOUT ROWID"
        )
        conn.execute("BEGIN IMMEDIATE")
        for start in range(0, len(rows), 5000):
            conn.executemany("INSERT INTO o VALUES (?, ?, ?, ?)", rows[start : start + 5000])
        conn.execute("COMMIT")
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indicators", type=int, default=200_000)
    parser.add_argument("--target", type=int, default=50_000, help="observables/s to budget for")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, generate_key())  # no key file written for a benchmark
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="feedgate-floor-") as tmp:
        workdir = Path(tmp)
        hub = prepare(workdir, args.indicators)
        try:
            parts, receive, serve = fetch(hub)
            poll_db = workdir / "poll.db"
            hub_process = psutil.Process(hub.process.pid)
            hub_before = sum(hub_process.cpu_times()[:2])
            whole = run_contender(
                "feedgate poll_source",
                feedgate_command(hub, poll_db),
                poll_db,
                hub.indicators,
                dict(os.environ),
            )
            hub_during_poll = sum(hub_process.cpu_times()[:2]) - hub_before
        finally:
            hub.stop()
        print(f"{len(parts)} parts, {sum(map(len, parts)) / 1024**2:.0f} MB", file=sys.stderr)
        parse = best_cpu(args.repeat, lambda: parse_only(parts))
        read_cpu = best_cpu(args.repeat, lambda: read_all(parts))
        read = read_all(parts)
        observables = sum(map(len, read))
        store = min(store_all(read, workdir) for _ in range(args.repeat))
        rows = sqlite_rows(read)
        floor = best_cpu(args.repeat, lambda: sqlite_floor(rows, workdir))

    def line(what: str, seconds: float, note: str = "") -> None:
        print(f"  {what:<46}{seconds:>8.2f}{seconds / observables * 1e6:>10.1f}  {note}")

    print(
        f"\n{hub.indicators:,} indicators, {observables:,} observables read ({len(rows):,}"
        f" distinct), {cores} cores; {SEGMENT_DAYS}-day segments"
    )
    print(f"  {'stage (one core, best of ' + str(args.repeat) + ')':<46}{'CPU s':>8}{'µs/obs':>10}")
    line("hub: serve the window", serve, "C and Python, on the same machine")
    line("receive: our client fetches it", receive)
    line("parse: libxml2 alone", parse, "floor")
    line(
        "read: read_observables, parse included", read_cpu, f"{read_cpu - parse:.2f} s above parse"
    )
    line("store: FeedStore segments, upsert + commit", store, f"{store - floor:.2f} s above SQLite")
    line("SQLite: keyed executemany of the same rows", floor, "floor")
    spent = (whole.cpu + hub_during_poll) / whole.read * 1e6
    budget = cores / args.target * 1e6
    c_floor = (serve + parse + floor) / observables * 1e6
    print(
        f"\nwhole poll (poll_source, its process tree): {whole.seconds:.2f} s wall,"
        f" {whole.read / whole.seconds:,.0f} observables/s; CPU {whole.cpu:.2f} s + hub"
        f" {hub_during_poll:.2f} s = {spent:.1f} µs per observable"
    )
    print(
        f"budget at {args.target:,} observables/s on {cores} cores: {budget:.1f} µs of CPU per"
        f" observable, every core busy all the time. The floors (hub + parse + SQLite) take"
        f" {c_floor:.1f}, leaving {budget - c_floor:.1f} µs for all the rest (reading, context,"
        f" normalising, moving between processes, storing in Python, start-up); the poll spends"
        f" {spent - c_floor:.1f} µs on it"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How fast ``feedgate observables`` exports a big store, beside a bare SQLite read of its rows.

An admin exports a gateway's observables to feed another tool (``--format jsonl`` or ``csv`` to
a file); at ~2,100 rows/s a million took eight minutes. This builds a store of ``--rows``
observables once (cached under ``bench/out/``: OTX-like pulses of ``--per-pulse`` IPv4, domain,
URL and SHA-256 indicators, their context split into the shared and own layers a poll stores),
then times, best of ``--repeat``:

- ``feedgate observables --format jsonl`` and ``--format csv`` to a file, as a subprocess (what
  the admin runs, interpreter start and imports included);
- a bare ``sqlite3`` SELECT of the same rows (the observables joined with their source and
  shared context layer, every column fetched into Python tuples, nothing formatted): the floor
  under any export through Python's sqlite3 driver;

and prints rows/s of each and the ratio of each export to the bare read.

    PYTHONPATH=src .venv/bin/python bench/observables_export.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from feedgate import db
from feedgate.feeds.secrets import KEY_ENV, generate_key
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.observables import Kind, LayeredContext, Observable, ObservableBatch

OUT = Path(__file__).resolve().parent / "out"
SOURCE = "export-bench"
#: The bare read: what the export's query returns, without the formatting.
BARE_SELECT = (
    "SELECT o.id, s.name, o.kind, o.value, o.original_type, o.first_seen, o.last_seen,"
    " o.valid_until, o.expired, o.context, l.context FROM observables o"
    " JOIN feed_sources s ON s.id = o.source_id"
    " LEFT JOIN shared_contexts l ON l.source_id = o.source_id AND l.digest = o.shared_digest"
    " WHERE o.expired = 0 ORDER BY o.id"
)


def _indicator(n: int) -> tuple[Kind, str]:
    """The ``n``-th indicator: IPv4, domain, URL and SHA-256 in turn, all distinct."""
    which, k = n % 4, n // 4
    if which == 0:
        return Kind.IPV4, f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"
    if which == 1:
        return Kind.DOMAIN, f"host{k}.example.net"
    if which == 2:
        return Kind.URL, f"http://mal{k}.example.org/path/{k}/payload.exe"
    return Kind.SHA256, f"{n:064x}"


def _batches(rows: int, per_pulse: int) -> list[ObservableBatch]:
    batches: list[ObservableBatch] = []
    observables: list[Observable] = []
    for n in range(rows):
        pulse = n // per_pulse
        if n % per_pulse == 0:
            shared = {
                "package_id": f"alienvault-otx:Package-{pulse:08x}",
                "package_title": f"Pulse {pulse}: a campaign of the week",
                "description": "Indicators seen in a phishing campaign. " * 4,
                "tlp": "white",
            }
        kind, value = _indicator(n)
        own = {"indicator_id": f"alienvault-otx:indicator-{n:08x}", "indicator_title": value}
        observables.append(Observable(kind, value, None, LayeredContext(shared, own)))
        if len(observables) == 5000:
            batches.append(ObservableBatch.of(observables))
            observables = []
    if observables:
        batches.append(ObservableBatch.of(observables))
    return batches


def build(rows: int, per_pulse: int) -> Path:
    """The cached store of ``rows`` observables (made when missing)."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"observables-{rows}.db"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    for leftover in OUT.glob(partial.name + "*"):
        leftover.unlink()
    print(f"building {path} ({rows:,} observables) ...", file=sys.stderr)
    store = FeedStore(db.engine(str(partial)))
    try:
        store.add_source(Source(name=SOURCE, hostname="127.0.0.1", collection="bench"))
        seen = datetime.now(UTC)
        with store.segment(SOURCE) as segment:
            for batch in _batches(rows, per_pulse):
                segment.upsert(batch, seen)
            segment.finish(seen)
    finally:
        store.close()
    partial.rename(path)
    return path


def best(repeat: int, work: Callable[[], int]) -> tuple[float, int]:
    """The least wall time of ``repeat`` runs of ``work`` and the rows it handled."""
    seconds, count = float("inf"), 0
    for _ in range(repeat):
        began = time.perf_counter()
        count = work()
        seconds = min(seconds, time.perf_counter() - began)
    return seconds, count


def bare_read(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count = 0
        cursor = conn.execute(BARE_SELECT)
        while rows := cursor.fetchmany(5000):
            count += len(rows)
        return count
    finally:
        conn.close()


def export(path: Path, fmt: str, target: Path) -> int:
    """Run ``feedgate observables --format fmt`` into ``target``; the rows it wrote."""
    command = [
        sys.executable,
        "-m",
        "feedgate.cli",
        "observables",
        "--format",
        fmt,
        "--db",
        str(path),
    ]
    with target.open("wb") as out:
        subprocess.run(command, stdout=out, check=True)
    with target.open("rb") as written:
        lines = sum(1 for _ in written)
    return lines - 1 if fmt == "csv" else lines  # CSV: a header line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--per-pulse", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, generate_key())  # no key file written for a benchmark
    path = build(args.rows, args.per_pulse)
    floor, count = best(args.repeat, lambda: bare_read(path))
    print(f"\n{count:,} observables in {path.name}, best of {args.repeat}")
    print(f"  {'':<34}{'seconds':>9}{'rows/s':>12}{'× bare read':>13}")
    print(f"  {'bare sqlite3 SELECT':<34}{floor:>9.2f}{count / floor:>12,.0f}{1:>13.1f}")
    figures = {"rows": count, "bare_rows_per_s": round(count / floor)}
    for fmt in ("jsonl", "csv"):
        target = OUT / f"export.{fmt}"
        seconds, written = best(
            args.repeat, lambda fmt=fmt, target=target: export(path, fmt, target)
        )
        if written != count:
            print(f"feedgate observables --format {fmt} wrote {written} rows, not {count}")
            return 1
        what = f"feedgate observables --format {fmt}"
        print(f"  {what:<34}{seconds:>9.2f}{count / seconds:>12,.0f}{seconds / floor:>13.1f}")
        figures[f"{fmt}_rows_per_s"] = round(count / seconds)
    print(json.dumps(figures), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

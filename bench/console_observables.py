"""What the console's Observables page costs on a big store: a page by key against a page by
offset, and the page's three exports.

The page pages by key (``after`` the last row's id) so that the thousandth page costs what the
first does; this prints both, for a page near the end of ``--rows`` IPv4 observables (one
source, one pulse title), best of ``--repeat``, then the time and size of the CSV, JSON lines
and STIX 2.1 exports of every row, through the page's own streaming (``_stream``), and a search
that matches nothing (a scan of every row: the worst case of a substring search).

    PYTHONPATH=src .venv/bin/python bench/console_observables.py [--rows 300000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.observables import Kind, Observable
from feedgate.web.console.observables import _stream

_BATCH = 50_000


def _best(run: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def _seeded(rows: int, directory: Path) -> FeedStore:
    store = FeedStore(engine(str(directory / "feeds.db")))
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    now = datetime.now(UTC)
    for start in range(0, rows, _BATCH):
        batch = [
            Observable(
                Kind.IPV4,
                f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                None,
                {"package_title": "t"},
            )
            for n in range(start, min(rows, start + _BATCH))
        ]
        with store.segment("otx") as segment:
            segment.upsert(batch, now)
            segment.finish(now)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault(secrets.KEY_ENV, secrets.generate_key())
    with tempfile.TemporaryDirectory() as directory:
        store = _seeded(args.rows, Path(directory))
        near_end = args.rows - 100
        last = store.observables(limit=1, offset=near_end)[0].id
        print(f"{args.rows:,} observables")
        first = _best(lambda: store.observables(limit=50), args.repeat)
        print(f"  first page:                 {first:8.2f} ms")
        print(
            "  page near the end, by key:  "
            f"{_best(lambda: store.observables(limit=50, after_id=last), args.repeat):8.2f} ms"
        )
        print(
            "  page near the end, offset:  "
            f"{_best(lambda: store.observables(limit=50, offset=near_end), args.repeat):8.2f} ms"
        )
        print(
            "  search matching nothing:    "
            f"{_best(lambda: store.observables(search='no-such-text', limit=50), 2):8.2f} ms"
        )
        every = {"source": None, "kind": None, "search": None, "live_only": True}
        for fmt in ("csv", "jsonl", "stix"):
            start = time.perf_counter()
            size = sum(len(piece) for piece in _stream(store, fmt, every))
            took = time.perf_counter() - start
            rate = args.rows / took
            print(f"  export {fmt:5}: {took:6.2f} s, {rate:9,.0f} rows/s, {size / 1e6:6.1f} MB")
        store.close()


if __name__ == "__main__":
    main()

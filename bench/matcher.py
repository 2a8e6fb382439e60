"""The matcher at scale: build time, bytes per observable, lookups per second, refresh after a poll.

Fills a fresh SQLite FeedStore with --count observables (a mix of kinds: domains, IPv4, URLs,
hashes, e-mail addresses, networks), builds a :class:`feedgate.mail.matcher.Matcher` snapshot
and prints:

- build: seconds to read the live rows (``feeds.enforced.live_rows``) and build the index;
- B/observable: ``snapshot.nbytes / count`` (the goal: ≤ 32 at 10 million) and the peak RSS;
- lookups/s: ``Snapshot.match`` over messages of 20 random offers, misses only (every host
  walking its parents, every address through the range table), then with one hit per message
  (each confirmed by one fetch from the store);
- refresh: seconds for ``Matcher.refresh`` after a poll (through the store's real ingest,
  ``Segment.upsert``) that added --added observables (the goal: ≤ 1 s after 1,000 at 10M),
  and that it took the delta path.

The fill does not go through ``Segment.upsert``: at 10 million rows that would measure the ingest
(bench/ingest.py does). It inserts the rows as the ingest stores them (digest = SHA-256 of
``kind NUL value``, one ``executemany`` per 50,000, one transaction) straight into
``observables`` and bumps the store's version once, as a commit would.

    .venv/bin/python bench/matcher.py [--count 1000000] [--added 1000] [--db PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedgate.db import engine
from feedgate.feeds.secrets import KEY_ENV, generate_key
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.matcher import Matcher
from feedgate.mail.model import Lookup, Offer, Part
from feedgate.observables import Kind, Observable

#: (kind, share of the observables, value of number n)
MIX = (
    ("domain", 0.45, lambda n: f"host{n}.example{n % 977}.com"),
    (
        "ipv4",
        0.25,
        lambda n: f"{10 + n // 16777216 % 200}.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",
    ),
    ("url", 0.15, lambda n: f"http://site{n}.example.net/path/{n}?q={n % 97}"),
    ("sha256", 0.06, lambda n: hashlib.sha256(b"%d" % n).hexdigest()),
    ("md5", 0.04, lambda n: hashlib.md5(b"%d" % n).hexdigest()),
    ("email", 0.04, lambda n: f"User.{n}@mail{n % 1013}.example.org"),
    ("cidr", 0.01, lambda n: f"{100 + n // 65536 % 100}.{n // 256 % 256}.{n % 256}.0/24"),
)
BATCH = 50_000
SEEN = "2026-12-01 00:00:00.000000"


def rows(count: int) -> Iterator[tuple[object, ...]]:
    for kind, share, make in MIX:
        for n in range(int(count * share)):
            value = make(n)
            digest = hashlib.sha256(f"{kind}\0{value}".encode()).digest()
            yield (1, digest, kind, value, SEEN, SEEN, 0, "{}", 1)


def fill(path: Path, count: int) -> int:
    """Insert about ``count`` rows for source 1 in one transaction; how many."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN IMMEDIATE")
    sql = (
        "INSERT INTO observables (source_id, digest, kind, value, first_seen, last_seen, expired,"
        " context, changed_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    done = 0
    batch: list[tuple[object, ...]] = []
    for row in rows(count):
        batch.append(row)
        if len(batch) == BATCH:
            batch.sort(key=lambda r: r[1])
            conn.executemany(sql, batch)
            done += len(batch)
            batch.clear()
    conn.executemany(sql, batch)
    done += len(batch)
    conn.execute("UPDATE feed_counters SET value = value + 1 WHERE name = 'version'")
    conn.execute("COMMIT")
    conn.close()
    return done


def offers(rng: random.Random, count: int, hit: bool) -> list[Offer]:
    """A message's offers: misses (hosts with parents to walk, addresses, URLs, hashes), and
    with ``hit`` one domain the store has."""
    out: list[Offer] = []
    for i in range(20 - hit):
        n = rng.randrange(10**9)
        pick = i % 5
        if pick == 0:
            value, lookup = f"a.b.nohost{n}.example{n % 977}.com", Lookup.DOMAIN
        elif pick == 1:
            value, lookup = f"172.{n % 256}.{n // 256 % 256}.{n // 65536 % 256}", Lookup.IP
        elif pick == 2:
            value, lookup = f"http://miss{n}.example.net/", Lookup.URL
        elif pick == 3:
            value, lookup = hashlib.sha256(b"miss%d" % n).hexdigest(), Lookup.SHA256
        else:
            value, lookup = f"someone{n}@mail.example.org", Lookup.EMAIL
        out.append(Offer(Part.URL, lookup, value, value))
    if hit:
        n = rng.randrange(int(count * MIX[0][1]))
        value = f"www.{MIX[0][2](n)}"
        out.append(Offer(Part.FROM, Lookup.DOMAIN, value, value))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--added", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--db", type=Path, default=None, help="a SQLite file (default: a temp)")
    args = parser.parse_args()
    os.environ.setdefault(KEY_ENV, generate_key())
    with tempfile.TemporaryDirectory(prefix="feedgate-matcher-") as tmp:
        path = args.db or Path(tmp) / "feeds.db"
        store = FeedStore(engine(str(path)))
        store.add_source(Source(name="bench", hostname="otx.example", collection="c"))
        started = time.perf_counter()
        count = fill(path, args.count)
        print(f"fill: {count:,} observables in {time.perf_counter() - started:.1f} s")

        matcher = Matcher(store)
        started = time.perf_counter()
        snapshot = matcher.snapshot()
        build = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"build: {build:.2f} s ({len(snapshot):,} entries)")
        print(
            f"memory: {snapshot.nbytes / count:.1f} B/observable"
            f" ({snapshot.nbytes / 1024**2:.0f} MiB of arrays; peak RSS {peak:.0f} MiB)"
        )

        rng = random.Random(7)
        for hit in (False, True):
            messages = [offers(rng, count, hit) for _ in range(args.messages)]
            started = time.perf_counter()
            found = sum(len(snapshot.match(message)) for message in messages)
            took = time.perf_counter() - started
            lookups = args.messages * 20
            print(
                f"lookups ({'one hit' if hit else 'no hit'} per message of 20):"
                f" {lookups / took:,.0f} offers/s, {args.messages / took:,.0f} messages/s"
                f" ({found} matches)"
            )
        assert found == args.messages, found

        later = datetime(2026, 12, 2, tzinfo=UTC)
        added = [
            Observable(Kind.DOMAIN, f"fresh{n}.example.com", None, {"n": n})
            for n in range(args.added)
        ]
        with store.segment("bench") as seg:
            seg.upsert(added, later)
            seg.finish(later + timedelta(seconds=1))
        started = time.perf_counter()
        assert matcher.refresh()
        refresh = time.perf_counter() - started
        fresh = matcher.snapshot()
        print(
            f"refresh after {args.added:,} added: {refresh * 1000:.0f} ms"
            f" (built by {fresh.built}; delta {len(fresh.delta):,})"
        )
        probe = Offer(Part.FROM, Lookup.DOMAIN, "x.fresh7.example.com", "x.fresh7.example.com")
        assert [m.value for m in fresh.match([probe])] == ["fresh7.example.com"]
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

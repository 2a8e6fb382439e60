"""A cluster on one real PostgreSQL (design.md "Storage"): nodes share sources, observables and
the log, and the scheduler's leases (FOR UPDATE SKIP LOCKED) make each due source polled by
exactly one node.

- Three :class:`Scheduler` instances, each with an engine of its own, in threads, against a real
  hub: each due source is polled once per interval, by the node holding its lease, never by two
  at once, and the store ends equal to what the hub holds.
- Three real ``feedgate serve`` processes on one ``FEEDGATE_DB``: sources polled exactly once
  (each node's threat-feed log file tells which node polled what); then ``kill -9`` of the node
  that holds a lease mid-poll, and after its lease expires another node finishes the poll from
  the watermark: nothing lost, nothing doubled (compared with the hub's own answer, as
  test_kill9.py does on SQLite).

PostgreSQL comes from tests/pgserver.py (skipped loudly, or failing under
FEEDGATE_REQUIRE_ALL=1, where it cannot run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fault_proxy import FaultProxy
from test_faults import AGE, NOW, SEGMENT, Hub, fast_client, stored, truth

from feedgate import db
from feedgate.feeds import secrets
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import PollResult, poll_source
from feedgate.feeds.scheduler import FREE, Scheduler
from feedgate.feeds.schema import leases
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore

# hub is a module-scoped fixture of test_faults; importing it makes it available here
from test_faults import hub  # noqa: F401  # isort: skip

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
NODES = 3
SOURCES = 6
LEASE_S = 2.0  # short, so a dead node's source is taken over within the test
TICK_S = 0.2


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The secret key, shared by this process and the nodes (sources' passwords)."""
    value = secrets.generate_key()
    monkeypatch.setenv(secrets.KEY_ENV, value)
    return value


def make_sources(
    server: Hub, count: int, *, prefix: str = "feed", port: int | None = None
) -> list[Source]:
    return [
        Source(
            name=f"{prefix}{i}",
            hostname=server.host,
            port=port or server.port,
            use_https=False,
            collection="user_AlienVault",
            username=server.key,
            password="x",
            age=AGE,
            poll_segment=SEGMENT,
            polling_interval=timedelta(hours=1),
            max_retries=1,
        )
        for i in range(count)
    ]


def poll_starts(feeds: FeedStore, name: str) -> list[datetime]:
    return [e.at for e in feeds.log_entries(name) if e.message.startswith("poll started")]


def assert_equals_the_hub(feeds: FeedStore, source: Source, server: Hub, begin: datetime) -> None:
    """The store holds exactly what the hub holds for ``source``'s window, once each."""
    have = stored(feeds, source.name)
    assert len(have) == len(set(have)), f"{source.name}: an observable is stored twice"
    mark = feeds.watermark(source.name)
    assert mark is not None
    everything, blocks = truth(source, server.host, server.port, begin, mark)
    assert blocks > 0 and everything
    assert set(have) == everything, source.name


# --- three Scheduler instances in threads --------------------------------------------------


def test_three_schedulers_poll_each_due_source_once_per_interval(
    hub: Hub,  # noqa: F811
    pg_url: str,
    key: str,
) -> None:
    first = FeedStore(db.engine(pg_url))
    sources = make_sources(hub, SOURCES)
    for source in sources:
        first.add_source(source)
    clock = [NOW]
    lock = threading.Lock()
    polls: list[tuple[str, str, str | None]] = []  # (node, source, lease holder seen)
    active: set[str] = set()
    overlaps: list[str] = []

    def node(name: str) -> Scheduler:
        store = FeedStore(db.engine(pg_url))  # an engine (a pool) of its own, as a node has

        def poll(
            store: FeedStore, source: Source, feed_log: ThreatFeedLog, **options: Any
        ) -> PollResult:
            with store.engine.connect() as conn:
                holder = conn.execute(
                    sa.select(leases.c.node).where(leases.c.source == source.name)
                ).scalar()
            with lock:
                polls.append((name, source.name, holder))
                if source.name in active:
                    overlaps.append(source.name)
                active.add(source.name)
            try:
                return poll_source(
                    store,
                    source,
                    feed_log,
                    now=lambda: clock[0],
                    client_factory=fast_client,
                    **options,
                )
            finally:
                with lock:
                    active.discard(source.name)

        return Scheduler(
            store,
            ThreatFeedLog(store, write_file=False),
            node=name,
            now=lambda: clock[0],
            poll=poll,
        )

    nodes = [node(f"n{i}") for i in range(NODES)]

    def all_at_once() -> list[PollResult]:
        results: list[PollResult] = []
        errors: list[BaseException] = []
        start = threading.Barrier(NODES)

        def run(scheduler: Scheduler) -> None:
            try:
                start.wait()
                got = scheduler.run_once()
                with lock:
                    results.extend(got)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        return results

    names = sorted(s.name for s in sources)
    results = all_at_once()
    assert sorted(name for _, name, _ in polls) == names, polls  # each exactly once
    assert all(holder == node for node, _, holder in polls), polls  # under its own lease
    assert overlaps == []
    assert all(r.ok for r in results), [r.error for r in results]
    for source in sources:
        assert_equals_the_hub(first, source, hub, NOW - AGE)
        assert len(poll_starts(first, source.name)) == 1
    with first.engine.connect() as conn:
        held = conn.execute(sa.select(leases.c.node).where(leases.c.node != FREE)).all()
    assert held == []  # every lease released

    assert all_at_once() == []  # nothing is due again within the interval
    assert len(polls) == SOURCES

    clock[0] = NOW + timedelta(minutes=61)
    again = all_at_once()
    assert sorted(name for _, name, _ in polls[SOURCES:]) == names
    assert all(holder == node for node, _, holder in polls), polls
    assert overlaps == []
    assert all(r.ok and r.new == 0 for r in again)
    for source in sources:
        assert first.watermark(source.name) == clock[0]
        assert len(poll_starts(first, source.name)) == 2


# --- three `feedgate serve` processes ------------------------------------------------------


class Cluster:
    """``feedgate serve`` processes on one database, each with its own data directory (so its
    own threat-feed log file) and output files."""

    def __init__(self, tmp_path: Path, url: str, key: str) -> None:
        self.tmp_path, self.url, self.key = tmp_path, url, key
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for i in range(count):
            home = self.tmp_path / f"node{i}"
            home.mkdir()
            env = {
                **os.environ,
                "FEEDGATE_DB": self.url,
                "FEEDGATE_LEASE": str(LEASE_S),
                "FEEDGATE_API_TOKEN": "cluster-token-0123456789abcdefghijkl",
                "XDG_DATA_HOME": str(home),
                secrets.KEY_ENV: self.key,
                "NO_PROXY": "127.0.0.1",
            }
            with (home / "out.txt").open("wb") as out, (home / "err.txt").open("wb") as err:
                self.procs.append(
                    subprocess.Popen(
                        [FEEDGATE, "serve", "--port", "0", "--tick", str(TICK_S)],
                        env=env,
                        stdout=out,
                        stderr=err,
                    )
                )

    def log_file(self, i: int) -> str:
        path = self.tmp_path / f"node{i}" / "feedgate" / "threat-feed.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def output(self) -> str:
        return "\n".join(
            f"--- node{i} (pid {p.pid}, rc {p.poll()}):\n"
            + (self.tmp_path / f"node{i}" / "err.txt").read_text(errors="replace")[-3000:]
            for i, p in enumerate(self.procs)
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung node
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, key: str) -> Iterator[Cluster]:
    group = Cluster(tmp_path, pg_url, key)
    try:
        yield group
    finally:
        group.stop()


def wait_for(what: str, check: Callable[[], bool], cluster: Cluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{cluster.output()}"
        time.sleep(0.05)


def test_serve_nodes_poll_each_source_exactly_once(hub: Hub, cluster: Cluster) -> None:  # noqa: F811
    feeds = FeedStore(db.engine(cluster.url))  # the schema, before the nodes start
    sources = make_sources(hub, SOURCES)
    for source in sources:
        feeds.add_source(source)
    cluster.start(NODES)
    wait_for(
        "every source polled",
        lambda: all(feeds.status(s.name).result == "ok" for s in sources),
        cluster,
    )
    time.sleep(5 * TICK_S)  # the nodes look again a few times: nothing more is due
    print(
        {
            s.name: [(e.at.time(), e.message[:30]) for e in feeds.log_entries(s.name)]
            for s in sources
        }
    )
    for source in sources:
        assert len(poll_starts(feeds, source.name)) == 1, source.name
        begun = feeds.status(source.name).last_start
        assert begun is not None
        assert_equals_the_hub(feeds, source, hub, begun - AGE)
    by_node = [cluster.log_file(i) for i in range(NODES)]
    for source in sources:
        polled_by = [
            i for i, text in enumerate(by_node) if f'"{source.name}": poll started' in text
        ]
        assert len(polled_by) == 1, (source.name, polled_by)
        assert by_node[polled_by[0]].count(f'"{source.name}": poll started') == 1
    assert all(p.poll() is None for p in cluster.procs), cluster.output()


def test_kill9_of_the_node_polling_a_source_then_another_node_finishes(
    hub: Hub,  # noqa: F811
    cluster: Cluster,
) -> None:
    feeds = FeedStore(db.engine(cluster.url))
    with FaultProxy(hub.host, hub.port) as proxy:
        (slow,) = make_sources(hub, 1, prefix="slow", port=proxy.port)
        others = make_sources(hub, 2)
        for source in (slow, *others):
            feeds.add_source(source)
        proxy.delay, proxy.chunk = 0.02, 256  # a few kB per poll answer: about 0.4 s each
        cluster.start(NODES)

        def holder() -> tuple[str, int]:
            with feeds.engine.connect() as conn:
                row = conn.execute(
                    sa.select(leases.c.node, leases.c.expires).where(leases.c.source == slow.name)
                ).first()
            return (row.node, row.expires) if row is not None else (FREE, 0)

        # mid-poll: a segment with data committed, the next one being read, the lease held
        wait_for(
            "the slow source's first segment with data",
            lambda: bool(feeds.count_observables(slow.name)) and holder()[0] != FREE,
            cluster,
        )
        # and a slow poll answer in flight (between two answers, for a moment, there is none)
        wait_for("the node to be reading a slow poll answer", lambda: proxy.sending == 1, cluster)
        node, _ = holder()
        pid = int(node.split(":")[-2])
        victim = next(p for p in cluster.procs if p.pid == pid)  # one of ours, nothing else
        first = feeds.status(slow.name)
        assert first.result == "running" and first.last_start is not None
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = datetime.now(UTC)
        _, expires = holder()  # the dead node's last renewal is final now
        kept = stored(feeds, slow.name)
        assert kept and feeds.watermark(slow.name) is not None
        proxy.clear()  # full speed for whoever takes over

        wait_for(
            "another node to finish the slow source",
            lambda: feeds.status(slow.name).result == "ok",
            cluster,
        )
    starts = poll_starts(feeds, slow.name)
    assert len(starts) == 2, starts  # the dead node's and exactly one take-over
    # taken over once the dead node's lease had expired, and soon after
    lease_end = datetime.fromtimestamp(expires / 1e6, UTC)
    taken_over = feeds.status(slow.name).last_start  # the take-over's start (log rows: seconds)
    assert taken_over is not None
    assert lease_end <= taken_over < killed_at + timedelta(seconds=LEASE_S + 5), (
        lease_end,
        taken_over,
        killed_at,
    )
    lines = [e.message for e in feeds.log_entries(slow.name)]
    assert sum("the previous poll did not finish" in line for line in lines) == 1
    takers = [
        i
        for i, p in enumerate(cluster.procs)
        if p is not victim and "the previous poll did not finish" in cluster.log_file(i)
    ]
    assert len(takers) == 1, cluster.output()
    assert holder()[0] == FREE  # released after the poll

    # nothing lost, nothing doubled: the store equals the hub over the whole window
    assert set(kept) <= set(stored(feeds, slow.name))
    assert_equals_the_hub(feeds, slow, hub, first.last_start - AGE)
    for source in others:
        assert len(poll_starts(feeds, source.name)) == 1
        begun = feeds.status(source.name).last_start
        assert begun is not None
        assert_equals_the_hub(feeds, source, hub, begun - AGE)
    assert all(p.poll() is None for p in cluster.procs if p is not victim), cluster.output()

"""The scheduler: due sources, one poll per interval, leases shared through the database; every
test on SQLite (conditional writes) and on a real PostgreSQL (FOR UPDATE SKIP LOCKED), through
``any_db`` (tests/pgserver.py). Three nodes against a real hub, and real ``feedgate serve``
processes killed mid-poll: test_cluster.py."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from feedgate import db
from feedgate.feeds import secrets
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import PollResult
from feedgate.feeds.scheduler import Scheduler, leases
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from pgserver import Database

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Recorder:
    """A poll function that records who polled and marks the poll as started, as polls do."""

    def __init__(self, store: FeedStore, clock: list[datetime]) -> None:
        self.store, self.clock = store, clock
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, store: FeedStore, source: Source, log: ThreatFeedLog) -> PollResult:
        with self.lock:
            self.calls.append(source.name)
        store.set_status(source.name, last_start=self.clock[0], result="ok")
        return PollResult(source.name)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


def _nodes(any_db: Database, count: int) -> tuple[list[Scheduler], Recorder, list[datetime]]:
    """``count`` nodes, each with an engine of its own, sharing sources a, b and c."""
    clock = [T0]
    engine_path = any_db.url
    first = FeedStore(db.engine(engine_path))
    for name in ("a", "b", "c"):
        first.add_source(
            Source(
                name=name,
                hostname="127.0.0.1",
                collection="c",
                polling_interval=timedelta(minutes=60),
            )
        )
    recorder = Recorder(first, clock)
    nodes = []
    for i in range(count):
        store = FeedStore(db.engine(engine_path))
        nodes.append(
            Scheduler(
                store,
                ThreatFeedLog(store, write_file=False),
                node=f"n{i}",
                now=lambda: clock[0],
                poll=recorder,
            )
        )
    return nodes, recorder, clock


def test_three_nodes_poll_each_source_once_per_interval(any_db: Database) -> None:
    nodes, recorder, clock = _nodes(any_db, 3)
    threads = [threading.Thread(target=node.run_once) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(recorder.calls) == ["a", "b", "c"]
    for node in nodes:
        node.run_once()
    assert len(recorder.calls) == 3  # nothing is due again within the interval
    clock[0] = T0 + timedelta(minutes=61)
    for node in nodes:
        node.run_once()
    assert sorted(recorder.calls) == ["a", "a", "b", "b", "c", "c"]


def test_a_dead_nodes_lease_expires(any_db: Database) -> None:
    nodes, _, clock = _nodes(any_db, 2)
    assert nodes[0].claim("a")  # ... and the node dies without releasing it
    assert not nodes[1].claim("a")
    clock[0] = T0 + nodes[0].lease + timedelta(seconds=1)
    assert nodes[1].claim("a")
    assert not nodes[0].claim("a")


def test_disabled_sources_are_not_due(any_db: Database) -> None:
    nodes, _, _ = _nodes(any_db, 1)
    store = nodes[0].store
    source = store.get_source("b")
    assert source is not None
    from dataclasses import replace

    store.update_source(replace(source, enabled=False))
    assert sorted(s.name for s in nodes[0].due()) == ["a", "c"]


def test_a_poll_whose_node_died_is_taken_over_when_its_lease_expires(any_db: Database) -> None:
    """A node takes a's lease and starts polling (status running), then dies: it neither
    finishes nor renews. The source is not due by its interval, but once the lease has expired
    another node polls it, instead of waiting an interval."""
    nodes, recorder, clock = _nodes(any_db, 2)
    assert nodes[0].claim("a")
    nodes[0].store.set_status("a", last_start=T0, result="running")  # ... and nodes[0] dies
    assert sorted(recorder.calls) == []
    nodes[1].run_once()
    assert sorted(recorder.calls) == ["b", "c"]  # a's lease is still held
    clock[0] = T0 + nodes[0].lease + timedelta(seconds=1)
    assert [s.name for s in nodes[1].due()] == ["a"]
    nodes[1].run_once()
    assert sorted(recorder.calls) == ["a", "b", "c"]
    assert nodes[1].due() == []  # a's status is no longer running: due an interval later


def test_a_released_lease_and_a_manual_poll_are_not_a_dead_node(any_db: Database) -> None:
    """'running' with no expired lease behind it (Poll Now runs without a lease) is left alone:
    only an expired lease says that its node died."""
    nodes, recorder, clock = _nodes(any_db, 1)
    nodes[0].run_once()
    nodes[0].store.set_status("a", last_start=T0, result="running")  # a Poll Now, running
    clock[0] = T0 + timedelta(minutes=30)
    nodes[0].run_once()
    assert sorted(recorder.calls) == ["a", "b", "c"]


def test_the_lease_is_renewed_while_a_poll_runs(any_db: Database) -> None:
    """A poll longer than the lease keeps it: the node renews it every third of its length."""
    nodes, _, _ = _nodes(any_db, 2)
    nodes[0].lease = timedelta(seconds=0.3)
    held: list[bool] = []
    nodes[0].now = nodes[1].now = lambda: datetime.now(UTC)
    assert nodes[0].claim("a")
    with nodes[0].holding("a"):
        for _ in range(5):  # 1 s: three leases long
            threading.Event().wait(0.2)
            held.append(not nodes[1].claim("a"))
    assert held == [True] * 5
    with nodes[0].store.engine.connect() as conn:
        rows = conn.execute(leases.select().where(leases.c.node == nodes[0].node)).all()
    assert rows == []  # released at the end
    assert nodes[1].claim("a")

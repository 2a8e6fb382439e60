"""The scheduler: due sources, one poll per interval, leases shared through the database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedgate import db
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import PollResult
from feedgate.feeds.scheduler import Scheduler
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore

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


def _nodes(tmp_path: Path, count: int) -> tuple[list[Scheduler], Recorder, list[datetime]]:
    clock = [T0]
    engine_path = str(tmp_path / "feeds.db")
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


def test_three_nodes_poll_each_source_once_per_interval(tmp_path: Path) -> None:
    nodes, recorder, clock = _nodes(tmp_path, 3)
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


def test_a_dead_nodes_lease_expires(tmp_path: Path) -> None:
    nodes, _, clock = _nodes(tmp_path, 2)
    assert nodes[0].claim("a")  # ... and the node dies without releasing it
    assert not nodes[1].claim("a")
    clock[0] = T0 + nodes[0].lease + timedelta(seconds=1)
    assert nodes[1].claim("a")
    assert not nodes[0].claim("a")


def test_disabled_sources_are_not_due(tmp_path: Path) -> None:
    nodes, _, _ = _nodes(tmp_path, 1)
    store = nodes[0].store
    source = store.get_source("b")
    assert source is not None
    from dataclasses import replace

    store.update_source(replace(source, enabled=False))
    assert sorted(s.name for s in nodes[0].due()) == ["a", "c"]

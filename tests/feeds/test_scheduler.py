"""The scheduler: due sources, one poll per interval, leases shared through the database; every
test on SQLite (conditional writes) and on a real PostgreSQL (FOR UPDATE SKIP LOCKED), through
``any_db`` (tests/pgserver.py). Three nodes against a real hub, and real ``feedgate serve``
processes killed mid-poll: test_cluster.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from feedgate import db
from feedgate.feeds import secrets
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.nodes import node_name
from feedgate.feeds.poller import PollResult, poll_source
from feedgate.feeds.scheduler import LeaseHeld, Scheduler
from feedgate.feeds.schema import leases
from feedgate.feeds.sources import Source, client_options
from feedgate.feeds.store import FeedStore
from feedgate.taxii.client import TaxiiClient
from http_raw import closed_port
from pgserver import Database

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Recorder:
    """A poll function that records who polled and marks the poll as started, as polls do."""

    def __init__(self, store: FeedStore, clock: list[datetime]) -> None:
        self.store, self.clock = store, clock
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(
        self, store: FeedStore, source: Source, log: ThreatFeedLog, **options: Any
    ) -> PollResult:
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
    """'running' with no expired lease behind it (a poll run outside the scheduler's leases) is
    left alone: only an expired lease says that its node died."""
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


def test_a_lost_lease_tells_the_poll_to_stop(any_db: Database) -> None:
    """If another node takes the lease over (this one stalled past its expiry), the holder's
    block learns it, so its poll stops instead of polling alongside the new holder."""
    nodes, _, _ = _nodes(any_db, 2)
    clock = [datetime.now(UTC)]
    nodes[0].lease = timedelta(seconds=0.3)
    nodes[0].now = nodes[1].now = lambda: clock[0]
    assert nodes[0].claim("a")
    with nodes[0].holding("a") as lost:
        assert not lost.is_set()
        clock[0] += timedelta(seconds=1)  # n0's lease has run out: n1 takes it over
        assert nodes[1].claim("a")
        assert lost.wait(5)  # n0's next renewal finds the lease gone
    assert _lease_holders(nodes[1].store) == {"a": nodes[1].node}  # n0 released nothing of n1's


def test_a_failing_release_does_not_hide_what_the_poll_raised(any_db: Database) -> None:
    """The database going away at the end of a poll must not replace the poll's own error."""
    nodes, _, _ = _nodes(any_db, 1)
    assert nodes[0].claim("a")
    with pytest.raises(ValueError, match="the poll's own error"), nodes[0].holding("a"):
        with nodes[0].store.engine.begin() as conn:
            conn.execute(leases.delete())
            conn.exec_driver_sql("ALTER TABLE leases RENAME TO leases_gone")  # release fails
        raise ValueError("the poll's own error")


# --- Poll Now: the same lease ----------------------------------------------------------------


def _poll_now_node(
    any_db: Database,
    clock: list[datetime],
    poll: Callable[..., PollResult],
    node: str = "now",
) -> Scheduler:
    """What Poll Now runs as: a node of its own (``feedgate poll`` and the API make a fresh
    :func:`~feedgate.feeds.scheduler.node_name` each time; here a readable one)."""
    store = FeedStore(db.engine(any_db.url))
    return Scheduler(
        store,
        ThreatFeedLog(store, write_file=False),
        node=node,
        now=lambda: clock[0],
        poll=poll,
    )


def _source(scheduler: Scheduler, name: str) -> Source:
    source = scheduler.store.get_source(name)
    assert source is not None
    return source


def _lease_holders(store: FeedStore) -> dict[str, str]:
    with store.engine.connect() as conn:
        return {row.source: row.node for row in conn.execute(leases.select()) if row.node}


def test_poll_now_is_refused_while_another_node_holds_the_lease(any_db: Database) -> None:
    nodes, recorder, clock = _nodes(any_db, 1)
    now = _poll_now_node(any_db, clock, recorder)
    assert nodes[0].claim("a")
    nodes[0].store.set_status("a", last_start=T0, result="running")  # n0 is polling a
    clock[0] = T0 + timedelta(seconds=30)
    with pytest.raises(LeaseHeld) as refused:
        now.poll_now(_source(now, "a"))
    assert refused.value.holder is not None
    assert (refused.value.holder.node, refused.value.holder.since) == ("n0", T0)
    assert str(refused.value) == (
        'source "a" is being polled by node n0 since 12:00:00Z (its lease ends 12:02:00Z unless'
        " it renews it while it polls); try again when it finishes"
    )
    assert recorder.calls == []  # nothing polled
    assert _lease_holders(now.store) == {"a": "n0"}  # n0's lease untouched
    nodes[0].release("a")
    now.poll_now(_source(now, "a"))
    assert recorder.calls == ["a"]


def test_poll_now_holds_the_lease_while_it_polls_then_releases_it(any_db: Database) -> None:
    """While a Poll Now polls a, a scheduler pass polls only b and c, and a second Poll Now of a
    is refused, naming the first; afterwards the lease is free for the scheduler."""
    nodes, recorder, clock = _nodes(any_db, 2)
    second = _poll_now_node(any_db, clock, recorder, node="now2")
    refusals: list[str | None] = []

    def poll(store: FeedStore, source: Source, log: ThreatFeedLog, **options: Any) -> PollResult:
        assert _lease_holders(store) == {"a": "now"}
        nodes[0].run_once()
        with pytest.raises(LeaseHeld) as refused:
            second.poll_now(source)
        refusals.append(refused.value.holder.node if refused.value.holder else None)
        return recorder(store, source, log)

    now = _poll_now_node(any_db, clock, poll)
    assert now.poll_now(_source(now, "a")).ok
    assert sorted(recorder.calls) == ["a", "b", "c"]  # a once: by the Poll Now
    assert recorder.calls[-1] == "a" and refusals == ["now"]
    assert _lease_holders(now.store) == {}  # released
    assert nodes[1].claim("a")
    nodes[1].release("a")
    clock[0] = T0 + timedelta(minutes=61)
    nodes[1].run_once()
    assert sorted(recorder.calls) == ["a", "a", "b", "b", "c", "c"]


def test_a_poll_now_whose_process_died_is_taken_over_when_its_lease_expires(
    any_db: Database,
) -> None:
    """A Poll Now takes a's lease, its poll marks a running, and its process dies: until the
    lease expires nobody polls a; then the scheduler takes it over at once (not an interval
    later), and so would another Poll Now."""
    nodes, recorder, clock = _nodes(any_db, 1)
    nodes[0].run_once()  # a, b and c polled at T0
    clock[0] = T0 + timedelta(minutes=10)
    dead = _poll_now_node(any_db, clock, recorder, node="dead")
    assert dead.claim("a")  # what poll_now does first, then the poll ...
    dead.store.set_status("a", last_start=clock[0], result="running")  # ... and the process dies
    other = _poll_now_node(any_db, clock, recorder, node="now2")
    with pytest.raises(LeaseHeld, match="by node dead since 12:10:00Z"):
        other.poll_now(_source(other, "a"))
    clock[0] += dead.lease - timedelta(seconds=1)
    assert nodes[0].due() == []
    clock[0] += timedelta(seconds=2)  # the dead Poll Now's lease has expired
    assert [s.name for s in nodes[0].due()] == ["a"]
    assert other.poll_now(_source(other, "a")).ok  # another Poll Now may take it over
    assert nodes[0].due() == []
    dead.store.set_status("a", result="running")  # or, had it not: the scheduler takes it
    assert dead.claim("a")
    clock[0] += dead.lease + timedelta(seconds=1)
    nodes[0].run_once()
    assert sorted(recorder.calls[:3]) == ["a", "b", "c"] and recorder.calls[3:] == ["a", "a"]
    assert _lease_holders(nodes[0].store) == {}


def test_the_lease_is_renewed_while_a_poll_now_runs(any_db: Database) -> None:
    """A Poll Now longer than its lease keeps it, as a scheduler's poll does."""
    nodes, _, _ = _nodes(any_db, 1)
    nodes[0].now = lambda: datetime.now(UTC)
    held: list[bool] = []

    def slow_poll(
        store: FeedStore, source: Source, log: ThreatFeedLog, **options: Any
    ) -> PollResult:
        for _ in range(5):  # 1 s: three leases long
            threading.Event().wait(0.2)
            held.append(not nodes[0].claim("a"))
        return PollResult(source.name)

    now = _poll_now_node(any_db, [T0], slow_poll)
    now.now = lambda: datetime.now(UTC)
    now.lease = timedelta(seconds=0.3)
    now.poll_now(_source(now, "a"))
    assert held == [True] * 5
    assert _lease_holders(now.store) == {}
    assert nodes[0].claim("a")


def test_stopping_the_node_ends_a_poll_waiting_to_retry(tmp_path: Path) -> None:
    """``feedgate serve`` stopped (Ctrl-C) while a source's poll sat in its retry backoff: the
    backoff (2, 4, 8 s) ran to its end before the node could stop; it now ends at once."""
    port = closed_port()  # every attempt is refused
    store = FeedStore(db.engine(str(tmp_path / "feeds.db")))
    store.add_source(
        Source(name="down", hostname="127.0.0.1", port=port, use_https=False, collection="c")
    )
    no_transport_retries = partial(
        poll_source, client_factory=lambda s: TaxiiClient(**client_options(s), retries=0)
    )
    scheduler = Scheduler(store, ThreatFeedLog(store, write_file=False), poll=no_transport_retries)
    stop = threading.Event()
    worker = threading.Thread(target=scheduler.run_forever, args=(stop, 0.1), daemon=True)
    worker.start()
    deadline = time.monotonic() + 20
    while not any("retry 1 of 3" in e.message for e in store.log_entries("down")):
        assert time.monotonic() < deadline, [e.message for e in store.log_entries("down")]
        time.sleep(0.05)
    stop.set()
    worker.join(5)  # the rest of the backoff alone is 2 + 4 + 8 s
    assert not worker.is_alive()
    said = [e.message for e in store.log_entries("down")]
    assert any("not retried: this node is stopping" in m for m in said), said
    status = store.status("down")
    assert status.result == "error" and "this node is stopping" in (status.error or "")
    store.close()


def _ended_node() -> str:
    """The node name of a process of this host that has ended: it printed its name and exited."""
    code = "from feedgate.feeds.nodes import node_name; print(node_name())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_poll_now_takes_over_at_once_the_lease_of_an_ended_process_of_this_host(
    any_db: Database,
) -> None:
    """A Poll Now whose process died (kill -9) on this host: the next Poll Now polls at once,
    not after the lease; a live process of this host, a node of another host, and an ended
    process of another host keep theirs until it expires, and the refusal says until when."""
    _, recorder, clock = _nodes(any_db, 1)
    now = _poll_now_node(any_db, clock, recorder)
    ended = _ended_node()
    dead = _poll_now_node(any_db, clock, recorder, node=ended)
    assert dead.claim("a")
    dead.store.set_status("a", last_start=T0, result="running")  # then its process ended
    assert now.poll_now(_source(now, "a")).ok  # the clock has not moved: the lease is live
    assert recorder.calls == ["a"] and _lease_holders(now.store) == {}

    host, _, rest = node_name().split(":")
    elsewhere = ended.replace(f"{host}:", "gw2:", 1)  # the same, of another host
    reused = f"{host}:{os.getpid()}:{rest.replace('.', '.1', 1)}"  # our PID, another start
    for holder, taken in [(node_name(), False), (elsewhere, False), (reused, True)]:
        clock[0] += timedelta(minutes=1)
        other = _poll_now_node(any_db, clock, recorder, node=holder)
        assert other.claim("b")
        if taken:
            assert now.poll_now(_source(now, "b")).ok, holder
            continue
        with pytest.raises(LeaseHeld) as refused:
            now.poll_now(_source(now, "b"))
        ends = clock[0] + other.lease
        assert str(refused.value) == (
            f'source "b" is being polled by node {holder} (its lease ends {ends:%H:%M:%S}Z'
            " unless it renews it while it polls); try again when it finishes"
        )
        assert _lease_holders(now.store) == {"b": holder}
        other.release("b")
    assert recorder.calls == ["a", "b"]

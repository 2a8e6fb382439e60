"""feeds._ingest: a segment kept in memory and a segment spilled to the staging table store the
same rows and count the same; a spilling segment does not hold SQLite's writer lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore, StoredObservable
from feedgate.observables import Kind, LayeredContext, Observable

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


def open_store(path: Path, budget: int | None) -> FeedStore:
    store = FeedStore(engine(str(path)))
    if budget is not None:
        store.segment_memory_budget = budget
    store.add_source(Source(name="otx", hostname="otx.example", collection="user_AV"))
    return store


@pytest.fixture(params=["memory", "spill"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeedStore]:
    s = open_store(tmp_path / "feeds.db", None if request.param == "memory" else 1)
    yield s
    s.close()


def ip(n: int, **ctx: Any) -> Observable:
    return Observable(Kind.IPV4, f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", None, ctx)


def layered(n: int, pulse: str, **own: Any) -> Observable:
    """An observable whose context has a package layer shared with its pulse's others."""
    shared = _PULSES.setdefault(pulse, {"package_id": f"pkg-{pulse}", "package_title": pulse})
    context = LayeredContext(shared, {"indicator_id": f"ind-{n}", **own})
    return ip(n)._replace(context=context)


_PULSES: dict[str, dict[str, Any]] = {}


def rows(store: FeedStore) -> list[tuple[Any, ...]]:
    def key(o: StoredObservable) -> tuple[Any, ...]:
        ctx = tuple(sorted(o.context.items()))
        return (o.kind, o.value, o.first_seen, o.last_seen, o.valid_until, o.expired, ctx)

    return sorted(key(o) for o in store.observables(live_only=False, limit=10**6))


def run_script(store: FeedStore) -> list[tuple[int, int]]:
    """Segments with repeats, an older re-poll, an expiry and a value seen again."""
    counts = []
    with store.segment("otx") as seg:
        counts.append(seg.upsert([ip(n, pulse="a") for n in range(0, 300)], T0))
        counts.append(seg.upsert([layered(n, "b") for n in range(200, 400)], T0 + timedelta(1)))
        counts.append(seg.upsert([ip(n, pulse="c") for n in range(250, 260)], T0))  # older
        seg.finish(T0 + timedelta(days=1))
    assert store.expire("otx", T0 + timedelta(days=32)) == 400
    with store.segment("otx") as seg:
        counts.append(seg.upsert([ip(n) for n in range(390, 500)], T0 + timedelta(days=33)))
        counts.append(
            seg.upsert(
                [layered(1000, "d", valid_until="2001-01-01T00:00:00Z")], T0 + timedelta(days=33)
            )
        )
        seg.finish(T0 + timedelta(days=33))
    return counts


def test_memory_and_spill_store_and_count_the_same(tmp_path: Path) -> None:
    memory = open_store(tmp_path / "memory.db", None)
    spill = open_store(tmp_path / "spill.db", 1)
    try:
        counts = run_script(memory)
        assert counts == [(300, 0), (100, 0), (0, 0), (110, 0), (1, 0)]
        assert run_script(spill) == counts
        assert rows(memory) == rows(spill)
        first = {o.value: o for o in memory.observables(live_only=False, limit=10**6)}
        assert first["10.0.0.250"].last_seen == T0 + timedelta(days=1)  # not moved backwards
        assert first["10.0.0.250"].context == {"pulse": "c"}
        assert first["10.0.1.143"].first_seen == T0 + timedelta(days=1)  # n = 399
        assert first["10.0.3.232"].expired  # n = 1000: valid_until long past
        assert memory.watermark("otx") == spill.watermark("otx") == T0 + timedelta(days=33)
    finally:
        memory.close()
        spill.close()


def test_a_failed_segment_leaves_nothing_and_the_next_one_works(store: FeedStore) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.segment("otx") as seg:
        seg.upsert([ip(n) for n in range(100)], T0)
        seg.finish(T0)
        raise Boom
    assert store.count_observables() == {}
    assert store.watermark("otx") is None
    with store.segment("otx") as seg:
        assert seg.upsert([ip(1), ip(2)], T0) == (2, 0)
    assert store.count_observables() == {"ipv4": 2}


def test_other_writers_go_on_while_a_segment_is_open(store: FeedStore) -> None:
    """Neither the memory buffer nor the spill takes SQLite's writer lock before the commit."""
    with store.segment("otx") as seg:
        seg.upsert([ip(n) for n in range(50)], T0)
        writer = threading.Thread(target=store.add_log, args=("otx", "info", "meanwhile"))
        writer.start()
        writer.join(10)
        assert not writer.is_alive()
        seg.upsert([ip(n) for n in range(50, 60)], T0)
    assert store.count_observables() == {"ipv4": 60}
    assert [e.message for e in store.log_entries("otx")] == ["meanwhile"]


def test_a_spilling_segment_keeps_its_shared_layers_within_the_memory_budget(
    tmp_path: Path,
) -> None:
    """Packages of one indicator each with a long description: the layers are most of the
    segment's bytes, and go to the staging area with its rows instead of staying in memory."""
    store = open_store(tmp_path / "feeds.db", 100_000)
    description = "a long pulse description " * 200  # 5 kB
    try:
        with store.segment("otx") as seg:
            for batch in range(10):
                contexts = [
                    LayeredContext(
                        {"package_id": f"pkg-{batch}-{n}", "package_description": description},
                        {"indicator_id": f"ind-{batch}-{n}"},
                    )
                    for n in range(100)
                ]
                found = [ip(batch * 100 + n)._replace(context=c) for n, c in enumerate(contexts)]
                assert seg.upsert(found, T0) == (100, 0)
                assert sum(len(text) for text in seg._layers.values()) <= 100_000
        stored = store.observables(limit=10**6)
        assert len(stored) == 1000
        assert all(o.context["package_description"] == description for o in stored)
        assert {o.context["package_id"] for o in stored} == {
            f"pkg-{batch}-{n}" for batch in range(10) for n in range(100)
        }
    finally:
        store.close()

"""feeds.store on SQLite and on a real PostgreSQL (every test runs on both, through the
``any_db`` fixture of tests/pgserver.py): sources with secrets encrypted at rest, segments as
transactions, upsert counting, expiry, the version counter, browsing and the log rows."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from feedgate.db import engine
from feedgate.feeds import held, secrets
from feedgate.feeds.schema import observables_table, shared_contexts
from feedgate.feeds.schema import sources as sources_table
from feedgate.feeds.sources import Source
from feedgate.feeds.store import BATCH_SIZE, FeedStore, FeedStoreError, SourceStatus
from feedgate.observables import Kind, LayeredContext, Observable
from pgserver import Database

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PASSWORD = "S3cr3t-pass-phrase-xyzzy"
KEY_PASSWORD = "key-pass-q7w8e9r0"


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def store(any_db: Database) -> Iterator[FeedStore]:
    s = FeedStore(engine(any_db.url))
    yield s
    s.close()


def make_source(name: str = "otx", **changes: Any) -> Source:
    values: dict[str, Any] = {"hostname": "otx.example", "collection": "user_AV"}
    values.update(changes)
    return Source(name=name, **values)


def ip(n: int, **ctx: Any) -> Observable:
    return Observable(Kind.IPV4, f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", None, ctx)


def live_values(store: FeedStore, source: str = "otx") -> set[str]:
    return {o.value for o in store.observables(source=source, limit=10**6)}


# --- sources -------------------------------------------------------------------------------


def test_sources_round_trip_with_secrets_encrypted_at_rest(
    store: FeedStore, any_db: Database
) -> None:
    full = make_source(
        description="AlienVault OTX",
        enabled=False,
        port=8443,
        use_https=False,
        poll_path="/taxii/poll",
        discovery_path="/taxii/discovery",
        taxii_version="1.0",
        username="me",
        password=PASSWORD,
        cert_file="/etc/c.pem",
        key_file="/etc/k.pem",
        key_password=KEY_PASSWORD,
        ca_cert="/etc/ca.pem",
        verify_ssl=False,
        proxy_url="http://proxy.example:3128",
        polling_interval=timedelta(minutes=90),
        age=timedelta(days=7),
        poll_segment=timedelta(hours=6),
        max_retries=5,
        enforce=frozenset({"ipv4", "domain"}),
    )
    store.add_source(full)
    store.add_source(make_source("abc"))
    assert store.get_source("otx") == full
    assert [s.name for s in store.list_sources()] == ["abc", "otx"]
    assert store.get_source("nope") is None
    store.close()
    raw = any_db.raw_bytes()
    assert b"otx.example" in raw  # the file is what we think it is
    for secret in (PASSWORD, KEY_PASSWORD):
        assert secret.encode() not in raw
        assert secret.encode("utf-16-le") not in raw


def test_duplicate_update_delete(store: FeedStore) -> None:
    store.add_source(make_source(password=None))
    with pytest.raises(FeedStoreError, match="a source named otx exists"):
        store.add_source(make_source())
    changed = make_source(description="changed", username="u", password="p")
    store.update_source(changed)
    assert store.get_source("otx") == changed
    with pytest.raises(FeedStoreError):
        store.update_source(make_source("missing"))
    with store.segment("otx") as seg:
        seg.upsert([ip(1)], T0)
        seg.finish(T0)
    store.set_status("otx", result="ok")
    store.add_log("otx", "info", "kept")
    assert store.delete_source("otx") is True
    assert store.delete_source("otx") is False
    assert store.get_source("otx") is None
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(observables_table)).scalar() == 0
    assert [e.message for e in store.log_entries("otx")] == ["kept"]  # the log stays
    with pytest.raises(FeedStoreError):
        store.status("otx")


def test_status_fields(store: FeedStore) -> None:
    store.add_source(make_source())
    assert store.status("otx") == SourceStatus()
    assert store.watermark("otx") is None
    store.set_status("otx", last_start=T0, result="running", error=None)
    store.set_status("otx", last_end=T0 + timedelta(seconds=5), result="error", error="boom", new=3)
    status = store.status("otx")
    assert status.last_start == T0 and status.last_start.tzinfo is not None
    assert status.last_end == T0 + timedelta(seconds=5)
    assert (status.result, status.error, status.new, status.read) == ("error", "boom", 3, None)
    with pytest.raises(FeedStoreError, match="unknown status field"):
        store.set_status("otx", colour="red")
    with pytest.raises(FeedStoreError):
        store.set_status("otx", result="maybe")
    with pytest.raises(FeedStoreError):
        store.set_status("missing", result="ok")


# --- ingest --------------------------------------------------------------------------------


def test_upsert_counts_new_and_updated_in_sorted_batches(store: FeedStore) -> None:
    store.add_source(make_source())
    batch1 = [ip(n, package_title="first") for n in range(20_000)]
    executed: list[int] = []
    # A segment waits in memory and is upserted in sorted batches (or spills past its budget).
    target = ("INSERT INTO OBSERVABLES", "INSERT INTO TEMP")

    def count_rows(
        conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith(target):
            executed.append(len(params) if many else 1)

    sa.event.listen(store.engine, "before_cursor_execute", count_rows)
    with store.segment("otx") as seg:
        assert seg.upsert(batch1, T0) == (20_000, 0)
        seg.finish(T0 + timedelta(days=1))
    sa.event.remove(store.engine, "before_cursor_execute", count_rows)
    assert sum(executed) == 20_000 and max(executed) <= BATCH_SIZE
    assert store.count_observables() == {"ipv4": 20_000}
    assert store.watermark("otx") == T0 + timedelta(days=1)

    # Again: 10,000 seen again (updated), 5,000 new, duplicates in the input counted once.
    later = T0 + timedelta(days=1)
    again = [ip(n, package_title="second") for n in range(10_000, 25_000)]
    with store.segment("otx") as seg:
        assert seg.upsert(again + again[:100], later) == (5_000, 10_000)
        assert seg.upsert(again[:10], later) == (0, 0)  # already counted in this segment
        seg.finish(later)
    assert store.count_observables() == {"ipv4": 25_000}
    row = store.observables(search="10.0.39.16")[0]  # n = 10,000
    assert row.first_seen == T0 and row.last_seen == later
    assert row.context == {"package_title": "second"}


def test_sorted_batches_and_first_seen_kept(store: FeedStore) -> None:
    store.add_source(make_source())
    with store.segment("otx") as seg:
        seg.upsert([ip(2), ip(1)], T0 + timedelta(days=2))
    # An older segment polled again does not move last_seen backwards.
    with store.segment("otx") as seg:
        assert seg.upsert([ip(1)], T0) == (0, 1)
    (row,) = store.observables(search="10.0.0.1")
    assert row.first_seen == T0 + timedelta(days=2) and row.last_seen == T0 + timedelta(days=2)


def test_a_failing_segment_stores_nothing_and_keeps_the_watermark(store: FeedStore) -> None:
    store.add_source(make_source())
    with store.segment("otx") as seg:
        seg.upsert([ip(1)], T0)
        seg.finish(T0)
    version = store.version()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.segment("otx") as seg:
        seg.upsert([ip(n) for n in range(2, 12_000)], T0 + timedelta(days=1))
        seg.finish(T0 + timedelta(days=1))
        raise Boom
    assert store.watermark("otx") == T0
    assert store.count_observables() == {"ipv4": 1}
    assert store.version() == version
    # The connection is clean for the next segment.
    with store.segment("otx") as seg:
        assert seg.upsert([ip(2)], T0) == (1, 0)
    assert store.count_observables() == {"ipv4": 2}


def test_log_rows_can_be_written_while_a_segment_is_open(store: FeedStore) -> None:
    """The poller logs skipped blocks mid-segment: SQLite must not deadlock on its own lock."""
    store.add_source(make_source())
    with store.segment("otx") as seg:
        seg.upsert([ip(1)], T0)
        store.add_log("otx", "warning", "block 2 skipped")
        seg.upsert([ip(2)], T0)
        # Another writer in another thread finishes too.
        worker = threading.Thread(target=store.set_status, args=("otx",), kwargs={"new": 1})
        worker.start()
        worker.join(10)
        seg.finish(T0)
    assert store.count_observables() == {"ipv4": 2}
    assert store.status("otx").new == 1


def test_segment_of_unknown_source(store: FeedStore) -> None:
    with pytest.raises(FeedStoreError, match="no source named x"), store.segment("x"):
        pass


def test_version_moves_with_committed_changes(store: FeedStore) -> None:
    v0 = store.version()
    store.add_source(make_source())
    v1 = store.version()
    assert v1 > v0
    with store.segment("otx") as seg:
        seg.finish(T0)  # nothing written: no change for matchers
    assert store.version() == v1
    with store.segment("otx") as seg:
        seg.upsert([ip(1)], T0)
    v2 = store.version()
    assert v2 > v1
    assert store.expire("otx", T0 + timedelta(days=1)) == 0
    assert store.version() == v2
    assert store.expire("otx", T0 + timedelta(days=31)) == 1
    assert store.version() > v2


# --- expiry --------------------------------------------------------------------------------


def test_expiry_by_age(store: FeedStore) -> None:
    store.add_source(make_source(age=timedelta(days=30)))
    with store.segment("otx") as seg:
        seg.upsert([ip(1)], T0)
        seg.upsert([ip(2)], T0 + timedelta(days=10))
    assert store.expire("otx", T0 + timedelta(days=30)) == 0  # not longer than the age
    assert store.expire("otx", T0 + timedelta(days=31)) == 1
    assert live_values(store) == {"10.0.0.2"}
    everything = store.observables(live_only=False)
    assert {(o.value, o.expired) for o in everything} == {("10.0.0.1", True), ("10.0.0.2", False)}
    assert store.count_observables(live_only=False) == {"ipv4": 2}
    # Seen again after it expired: live again, counted as new, first_seen kept.
    with store.segment("otx") as seg:
        assert seg.upsert([ip(1), ip(2)], T0 + timedelta(days=32)) == (1, 1)
    assert live_values(store) == {"10.0.0.1", "10.0.0.2"}
    (row,) = store.observables(search="10.0.0.1")
    assert row.first_seen == T0 and not row.expired


def test_expiry_by_valid_until(store: FeedStore) -> None:
    store.add_source(make_source())
    now = datetime.now(UTC).replace(microsecond=0)
    soon = (now + timedelta(days=2)).isoformat().replace("+00:00", "Z")
    past = "2001-01-01T00:00:00"
    with store.segment("otx") as seg:
        assert seg.upsert(
            [
                ip(1, valid_until=soon),
                ip(2, valid_until="not a time"),
                ip(3),
                ip(4, valid_until=past),  # already over: stored, but not live
            ],
            now,
        ) == (4, 0)
    rows = {o.value: o for o in store.observables(live_only=False)}
    assert rows["10.0.0.1"].valid_until == now + timedelta(days=2)
    assert rows["10.0.0.2"].valid_until is None
    assert rows["10.0.0.4"].expired
    assert live_values(store) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert store.expire("otx", now + timedelta(days=1)) == 0
    assert store.expire("otx", now + timedelta(days=2)) == 1
    assert live_values(store) == {"10.0.0.2", "10.0.0.3"}


def test_expire_unknown_source(store: FeedStore) -> None:
    with pytest.raises(FeedStoreError):
        store.expire("x", T0)


# --- the history of what a source holds (feeds.held) ---------------------------------------


def test_held_history_keeps_each_days_last_live_counts_per_kind(store: FeedStore) -> None:
    store.add_source(make_source(age=timedelta(days=30)))
    store.add_source(make_source("other"))
    with store.segment("otx") as seg:
        seg.upsert([ip(1), ip(2), Observable(Kind.DOMAIN, "evil.example", None, {})], T0)
    assert store.record_held("otx", T0) == {"ipv4": 2, "domain": 1}
    assert store.record_held("other", T0) == {}  # holds nothing: no rows
    with store.segment("otx") as seg:
        seg.upsert([ip(3)], T0 + timedelta(hours=5))
    late = T0 + timedelta(hours=6)
    store.record_held("otx", late)  # the same UTC day: replaces the earlier snapshot
    next_day = T0 + timedelta(days=30, hours=3)
    assert store.expire("otx", next_day) == 3  # not seen for longer than 30 days: all but 3
    store.record_held("otx", next_day)
    assert [(h.source, h.kind, h.at, h.held) for h in store.held_history()] == [
        ("otx", "domain", late, 1),
        ("otx", "ipv4", late, 3),
        ("otx", "ipv4", next_day, 1),
    ]
    assert [h.at for h in store.held_history(since=T0 + timedelta(days=1))] == [next_day]
    with pytest.raises(FeedStoreError, match="no source named gone"):
        store.record_held("gone", T0)


def test_held_history_is_pruned_when_written_and_goes_with_its_source(store: FeedStore) -> None:
    store.add_source(make_source())
    with store.segment("otx") as seg:
        seg.upsert([ip(1)], T0)
    store.record_held("otx", T0)
    store.record_held("otx", T0 + held.KEEP - timedelta(days=1))
    assert len(store.held_history()) == 2  # within KEEP of the newest: kept
    store.record_held("otx", T0 + held.KEEP + timedelta(days=1))
    assert [h.at for h in store.held_history()] == [
        T0 + held.KEEP - timedelta(days=1),
        T0 + held.KEEP + timedelta(days=1),
    ]
    assert store.delete_source("otx")
    assert store.held_history() == []


# --- browse and log ------------------------------------------------------------------------


def test_browse_filters_and_paging(store: FeedStore) -> None:
    store.add_source(make_source())
    store.add_source(make_source("other"))
    with store.segment("otx") as seg:
        seg.upsert(
            [
                ip(1, package_title="Evil Campaign"),
                Observable(Kind.DOMAIN, "evil_100%.example", None, {}),
                Observable(Kind.OTHER, "Global\\mutex", "MutexObjectType", {"tlp": "amber"}),
            ],
            T0,
        )
    with store.segment("other") as seg:
        seg.upsert([ip(1), ip(2)], T0)
    assert len(store.observables(limit=100)) == 5
    assert [o.kind for o in store.observables(source="otx", kind="other")] == ["other"]
    assert store.observables(source="otx", kind="other")[0].original_type == "MutexObjectType"
    assert [o.value for o in store.observables(search="evil campaign")] == ["10.0.0.1"]
    assert [o.value for o in store.observables(search="_100%")] == ["evil_100%.example"]
    assert store.observables(search="0_1") == []  # "_" is not a wildcard
    assert len(store.observables(limit=2)) == 2
    assert len(store.observables(limit=2, offset=4)) == 1
    assert store.count_observables() == {"ipv4": 3, "domain": 1, "other": 1}
    assert store.count_observables(source="other") == {"ipv4": 2}
    assert store.count_observables(kind="domain") == {"domain": 1}
    assert [o.value for o in store.iter_observables(batch=2)] == [
        o.value for o in store.observables()
    ]
    obs = store.observables(kind="other")[0].to_observable()
    assert obs == Observable(Kind.OTHER, "Global\\mutex", "MutexObjectType", {"tlp": "amber"})


def test_keyset_pages_follow_the_last_rows_id_and_one_is_read_by_id(store: FeedStore) -> None:
    store.add_source(make_source())
    store.add_source(make_source("other"))
    with store.segment("otx") as seg:
        seg.upsert([ip(n) for n in range(7)], T0)
    with store.segment("other") as seg:
        seg.upsert([ip(100)], T0)
    whole = store.observables(source="otx")
    ids = [o.id for o in whole]
    assert None not in ids and ids == sorted(ids)
    first = store.observables(source="otx", limit=3)
    second = store.observables(source="otx", limit=3, after_id=first[-1].id)
    third = store.observables(source="otx", limit=3, after_id=second[-1].id)
    assert [*first, *second, *third] == whole and len(third) == 1
    assert store.observables(source="otx", after_id=third[-1].id) == []
    found = store.observable(whole[2].id or 0)
    assert found == whole[2] and found is not None and found.id == whole[2].id
    assert store.observable(max(ids) + 1000) is None


def _layer_rows(store: FeedStore) -> list[tuple[str, str]]:
    """(source name, JSON) of every stored shared context layer."""
    with store.engine.connect() as conn:
        query = sa.select(sources_table.c.name, shared_contexts.c.context).join(
            sources_table, sources_table.c.id == shared_contexts.c.source_id
        )
        return sorted((str(name), str(text)) for name, text in conn.execute(query))


def _own_rows(store: FeedStore) -> dict[str, str]:
    """value → the context JSON kept in the observable's own row."""
    with store.engine.connect() as conn:
        query = sa.select(observables_table.c.value, observables_table.c.context)
        return {str(value): str(text) for value, text in conn.execute(query)}


def _pulse(title: str, *values: int, **shared: Any) -> list[Observable]:
    """Observables of one package: one shared layer, each indicator's own keys over it."""
    layer = {"package_id": f"pkg-{title}", "package_title": title, "tlp": "white", **shared}
    return [
        Observable(
            Kind.IPV4,
            f"10.0.0.{n}",
            None,
            LayeredContext(
                layer, {"indicator_id": f"ind-{n}", **({"tlp": "amber"} if n == 2 else {})}
            ),
        )
        for n in values
    ]


def test_a_packages_shared_context_is_stored_once_and_reads_merged(store: FeedStore) -> None:
    store.add_source(make_source())
    store.add_source(make_source("other"))
    pulse = _pulse("Evil Campaign", 1, 2, 3, package_description="long text " * 50)
    with store.segment("otx") as seg:
        assert seg.upsert(pulse, T0) == (3, 0)
    with store.segment("other") as seg:  # each source keeps its own layers
        seg.upsert(pulse[:1], T0)
    assert [name for name, _ in _layer_rows(store)] == ["other", "otx"]
    assert all("long text" not in text for text in _own_rows(store).values())
    stored = sorted(store.observables(source="otx"), key=lambda o: o.value)
    assert [dict(o.context) for o in stored] == [dict(o.context) for o in pulse]
    assert [list(o.context) for o in stored] == [list(o.context) for o in pulse]  # same order
    assert stored[1].context["tlp"] == "amber"  # the indicator's own key wins
    # search sees both layers
    assert len(store.observables(source="otx", search="evil campaign")) == 3
    assert [o.value for o in store.observables(source="otx", search="ind-2")] == ["10.0.0.2"]
    assert store.observables(source="otx", search="no such thing") == []


def test_unused_shared_layers_are_dropped_when_the_source_expires(store: FeedStore) -> None:
    store.add_source(make_source())
    with store.segment("otx") as seg:
        seg.upsert(_pulse("v1", 1, 2) + _pulse("other pulse", 3), T0)
    assert len(_layer_rows(store)) == 2
    with store.segment("otx") as seg:  # the pulse is revised: its observables move to v2
        seg.upsert(_pulse("v2", 1, 2), T0 + timedelta(hours=1))
    assert len(_layer_rows(store)) == 3
    store.expire("otx", T0 + timedelta(hours=1))
    titles = sorted(json.loads(text)["package_title"] for _, text in _layer_rows(store))
    assert titles == ["other pulse", "v2"]
    assert {o.context["package_title"] for o in store.observables()} == {"other pulse", "v2"}
    assert store.delete_source("otx")
    assert _layer_rows(store) == []  # and a source's layers go with it


def test_expiry_looks_for_unused_layers_only_after_a_row_left_one(
    store: FeedStore, any_db: Database
) -> None:
    """The search is a pass over the source's rows: done once per source in a process, then
    only after a segment moved a row off a layer (a revised pulse, an observable that moved to
    another pulse, in the store or within the segment)."""
    store.add_source(make_source())
    with store.segment("otx") as seg:
        seg.upsert(_pulse("a", 1, 2), T0)
    store.expire("otx", T0)  # the first in this process: looks
    with store.engine.begin() as conn:  # what a process that stopped before expiry left
        sid = conn.execute(sa.select(sources_table.c.id)).scalar_one()
        conn.execute(shared_contexts.insert().values(source_id=sid, digest=b"x" * 32, context="{}"))
    with store.segment("otx") as seg:  # new rows, existing ones on their layer: no move
        seg.upsert(_pulse("a", 1, 2) + _pulse("b", 3), T0 + timedelta(hours=1))
    store.expire("otx", T0 + timedelta(hours=1))
    assert len(_layer_rows(store)) == 3  # the left-over layer is still there
    with store.segment("otx") as seg:  # within the segment: 4 is in "c", then in "d"
        seg.upsert(_pulse("c", 4), T0 + timedelta(hours=2))
        seg.upsert(_pulse("d", 4), T0 + timedelta(hours=2))
    store.expire("otx", T0 + timedelta(hours=2))
    titles = sorted(json.loads(text).get("package_title", "-") for _, text in _layer_rows(store))
    assert titles == ["a", "b", "d"]  # "c" and the left-over went
    with store.segment("otx") as seg:  # in the store: 3 moves from "b" to "e"
        seg.upsert(_pulse("e", 3), T0 + timedelta(hours=3))
    store.expire("otx", T0 + timedelta(hours=3))
    titles = sorted(json.loads(text)["package_title"] for _, text in _layer_rows(store))
    assert titles == ["a", "d", "e"]
    # another process's store looks once, whatever happened before it
    with store.engine.begin() as conn:
        conn.execute(shared_contexts.insert().values(source_id=sid, digest=b"y" * 32, context="{}"))
    other = FeedStore(engine(any_db.url))
    other.expire("otx", T0 + timedelta(hours=3))
    assert len(_layer_rows(store)) == 3
    other.close()


def test_expiry_keeps_a_layer_a_segment_in_progress_refers_to(store: FeedStore) -> None:
    """Two polls of one source at once (a node lost its lease mid-segment, another took the
    source over): the other's expiry must not drop a layer the first segment is writing rows
    over, even though no committed row refers to it (on PostgreSQL the first segment's rows,
    and its insert of the existing layer, are already in the database, uncommitted)."""
    store.add_source(make_source())
    with store.segment("otx") as seg:
        seg.upsert(_pulse("v1", 1, 2), T0)
    store.segment_memory_budget = 1  # every upsert goes to the database (or the stage) at once
    with store.segment("otx") as stale:
        stale.upsert(_pulse("v1", 4), T0 + timedelta(hours=1))
        with store.segment("otx") as other:  # the other node: the pulse was revised
            other.upsert(_pulse("v2", 1, 2), T0 + timedelta(hours=2))
        store.expire("otx", T0 + timedelta(hours=2))
    contexts = {o.value: o.context for o in store.observables()}
    assert {value: c.get("package_title") for value, c in contexts.items()} == {
        "10.0.0.1": "v2",
        "10.0.0.2": "v2",
        "10.0.0.4": "v1",
    }
    store.expire("otx", T0 + timedelta(hours=3))  # both in use: both kept
    assert sorted(json.loads(text)["package_title"] for _, text in _layer_rows(store)) == [
        "v1",
        "v2",
    ]


def test_dropping_unused_layers_is_one_pass_on_postgresql(pg_url: str) -> None:
    """PostgreSQL runs ``NOT IN (subquery)`` as a hashed subplan only while the subquery's rows
    fit in work_mem; past that (a few 100k observables) it scans them once per layer, seconds
    to hours of every poll's expiry. The sweep must plan as an anti-join, whatever work_mem."""
    store = FeedStore(engine(pg_url))
    store.add_source(make_source())
    deletes: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.startswith("DELETE FROM shared_contexts"):
            deletes.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", grab)
    store.expire("otx", T0)
    sa.event.remove(store.engine, "before_cursor_execute", grab)
    [(statement, parameters)] = deletes
    with store.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL work_mem = '64kB'")
        plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars())
    assert "SubPlan" not in plan, plan
    store.close()


def test_rows_written_before_shared_layers_read_as_they_were(store: FeedStore) -> None:
    store.add_source(make_source())
    with store.segment("otx") as seg:  # a plain context: all of it in the row, no layer
        seg.upsert([ip(7, package_title="Old", indicator_id="i-7")], T0)
    assert _layer_rows(store) == []
    assert store.observables()[0].context == {"package_title": "Old", "indicator_id": "i-7"}


def test_log_entries(store: FeedStore) -> None:
    first = store.add_log(None, "info", "started", at=T0)
    second = store.add_log("otx", "warning", "slow")
    third = store.add_log("otx", "error", "failed")
    assert first < second < third
    entries = store.log_entries()
    assert [(e.level, e.source, e.message) for e in entries] == [
        ("info", None, "started"),
        ("warning", "otx", "slow"),
        ("error", "otx", "failed"),
    ]
    assert entries[0].at == T0 and entries[1].at.tzinfo is not None
    assert [e.id for e in store.log_entries(after_id=second)] == [third]
    assert [e.message for e in store.log_entries(source="otx", limit=1)] == ["slow"]
    with pytest.raises(FeedStoreError):
        store.add_log(None, "debug", "x")

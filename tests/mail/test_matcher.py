"""feedgate.mail.matcher over a real FeedStore: every kind matched as the design says (ranges for
networks, the parent walk for hosts, e-mail addresses in any case), hits confirmed by value,
refreshes by delta, merge and swap, and only enforced observables (unexpired, source enabled,
kind enforced)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.enforced import changes_since, digest_key, observables_by_ids
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.matcher import Index, Matcher, Snapshot, value_matches
from feedgate.mail.model import Lookup, Match, Offer, Part
from feedgate.observables import Kind, LayeredContext, Observable
from pgserver import Database

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)  # the real clock: any day
PULSE = {"package_id": "pkg-1", "package_title": "Bad pulse"}


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


def open_store(url: str, *sources: str) -> FeedStore:
    store = FeedStore(engine(url))
    for name in sources:
        store.add_source(Source(name=name, hostname="otx.example", collection="user_AV"))
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedStore]:
    s = open_store(str(tmp_path / "feeds.db"), "otx")
    yield s
    s.close()


@pytest.fixture
def db_store(any_db: Database) -> Iterator[FeedStore]:
    s = open_store(any_db.url, "otx")
    yield s
    s.close()


def obs(kind: Kind, value: str, title: str | None = None) -> Observable:
    context = LayeredContext(PULSE, {"indicator_title": title or f"{kind} {value}"})
    return Observable(kind, value, None, context)


def poll(
    store: FeedStore, *observables: Observable, source: str = "otx", at: datetime = T0
) -> None:
    with store.segment(source) as seg:
        seg.upsert(list(observables), at)
        seg.finish(at)


def offer(lookup: Lookup, value: str, part: Part = Part.URL, seen: str | None = None) -> Offer:
    return Offer(part, lookup, value, value if seen is None else seen)


def hits(snapshot: Snapshot, lookup: Lookup, value: str) -> list[str]:
    return [m.value for m in snapshot.match([offer(lookup, value)])]


def set_source(store: FeedStore, name: str = "otx", **changes: Any) -> None:
    source = store.get_source(name)
    assert source is not None
    store.update_source(dataclasses.replace(source, **changes))


# --- each kind ------------------------------------------------------------------------------

EVERY_KIND = (
    obs(Kind.IPV4, "192.0.2.7"),
    obs(Kind.IPV6, "2001:db8::7"),
    obs(Kind.CIDR, "198.51.100.0/24"),
    obs(Kind.CIDR, "198.51.0.0/16"),
    obs(Kind.CIDR, "2001:db8:aa00::/40"),
    obs(Kind.DOMAIN, "evil.com"),
    obs(Kind.DOMAIN, "deep.sub.example.org"),
    obs(Kind.URL, "http://evil.com/x?y=1"),
    obs(Kind.EMAIL, "Bad.Guy@evil.com"),
    obs(Kind.MD5, "d41d8cd98f00b204e9800998ecf8427e"),
    obs(Kind.SHA1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    obs(Kind.SHA256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
)


@pytest.fixture
def every_kind(store: FeedStore) -> Snapshot:
    poll(store, *EVERY_KIND)
    return Matcher(store).snapshot()


def test_addresses_match_exactly(every_kind: Snapshot) -> None:
    assert hits(every_kind, Lookup.IP, "192.0.2.7") == ["192.0.2.7"]
    assert hits(every_kind, Lookup.IP, "192.0.2.8") == []
    assert hits(every_kind, Lookup.IP, "2001:db8::7") == ["2001:db8::7"]
    assert hits(every_kind, Lookup.IP, "2001:db8::8") == []
    assert hits(every_kind, Lookup.IP, "::ffff:192.0.2.7") == ["192.0.2.7"]  # IPv4-mapped
    assert hits(every_kind, Lookup.IP, "not an address") == []


def test_networks_match_by_range_with_their_bounds(every_kind: Snapshot) -> None:
    both = ["198.51.100.0/24", "198.51.0.0/16"]  # nested: the innermost first
    assert hits(every_kind, Lookup.IP, "198.51.100.0") == both
    assert hits(every_kind, Lookup.IP, "198.51.100.255") == both
    assert hits(every_kind, Lookup.IP, "198.51.101.0") == ["198.51.0.0/16"]
    assert hits(every_kind, Lookup.IP, "198.51.0.0") == ["198.51.0.0/16"]
    assert hits(every_kind, Lookup.IP, "198.51.255.255") == ["198.51.0.0/16"]
    assert hits(every_kind, Lookup.IP, "198.50.255.255") == []
    assert hits(every_kind, Lookup.IP, "198.52.0.0") == []
    v6 = ["2001:db8:aa00::/40"]
    assert hits(every_kind, Lookup.IP, "2001:db8:aa00::") == v6
    assert hits(every_kind, Lookup.IP, "2001:db8:aaff:ffff:ffff:ffff:ffff:ffff") == v6
    assert hits(every_kind, Lookup.IP, "2001:db8:a9ff:ffff:ffff:ffff:ffff:ffff") == []
    assert hits(every_kind, Lookup.IP, "2001:db8:ab00::") == []


def test_hosts_match_themselves_and_their_parents_only(every_kind: Snapshot) -> None:
    assert hits(every_kind, Lookup.DOMAIN, "evil.com") == ["evil.com"]
    assert hits(every_kind, Lookup.DOMAIN, "a.b.evil.com") == ["evil.com"]
    assert hits(every_kind, Lookup.DOMAIN, "notevil.com") == []  # a suffix, not a parent
    assert hits(every_kind, Lookup.DOMAIN, "evil.com.example") == []
    assert hits(every_kind, Lookup.DOMAIN, "com") == []
    assert hits(every_kind, Lookup.DOMAIN, "x.deep.sub.example.org") == ["deep.sub.example.org"]
    assert hits(every_kind, Lookup.DOMAIN, "sub.example.org") == []  # a child does not match up


def test_urls_and_hashes_match_exactly(every_kind: Snapshot) -> None:
    assert hits(every_kind, Lookup.URL, "http://evil.com/x?y=1") == ["http://evil.com/x?y=1"]
    assert hits(every_kind, Lookup.URL, "http://evil.com/x?y=2") == []
    assert hits(every_kind, Lookup.URL, "http://evil.com/x") == []
    for lookup, observable in zip(
        (Lookup.MD5, Lookup.SHA1, Lookup.SHA256), EVERY_KIND[-3:], strict=True
    ):
        assert hits(every_kind, lookup, observable.value) == [observable.value]
        assert hits(every_kind, lookup, observable.value.upper()) == [observable.value]
        assert hits(every_kind, lookup, "0" * len(observable.value)) == []
    # a hash is matched only as its own kind
    assert hits(every_kind, Lookup.SHA256, EVERY_KIND[-3].value) == []


def test_email_addresses_match_in_any_case_local_part_included(every_kind: Snapshot) -> None:
    for value in ("Bad.Guy@evil.com", "bad.guy@evil.com", "BAD.GUY@EVIL.COM"):
        assert hits(every_kind, Lookup.EMAIL, value) == ["Bad.Guy@evil.com"]  # the stored value
    assert hits(every_kind, Lookup.EMAIL, "bad.guy2@evil.com") == []
    assert hits(every_kind, Lookup.EMAIL, "guy@evil.com") == []


def test_a_match_carries_what_the_console_and_the_log_need(
    store: FeedStore, every_kind: Snapshot
) -> None:
    found = every_kind.match(
        [
            offer(Lookup.DOMAIN, "www.evil.com", Part.FROM, seen="Mallory <m@WWW.Evil.com>"),
            offer(Lookup.IP, "192.0.2.7", Part.CLIENT_IP),
        ]
    )
    assert [(m.part, m.kind, m.value, m.seen, m.source) for m in found] == [
        (Part.FROM, "domain", "evil.com", "Mallory <m@WWW.Evil.com>", "otx"),
        (Part.CLIENT_IP, "ipv4", "192.0.2.7", "192.0.2.7", "otx"),
    ]
    assert found[0].context == {**PULSE, "indicator_title": "domain evil.com"}
    stored = observables_by_ids(store, [found[0].observable_id])
    assert stored[found[0].observable_id].value == "evil.com"
    assert found[0].to_dict()["context"]["package_title"] == "Bad pulse"


def test_one_observable_in_two_sources_is_two_matches(store: FeedStore) -> None:
    store.add_source(Source(name="other", hostname="o.example", collection="c"))
    poll(store, obs(Kind.DOMAIN, "evil.com"))
    poll(store, obs(Kind.DOMAIN, "evil.com"), source="other")
    found = Matcher(store).snapshot().match([offer(Lookup.DOMAIN, "evil.com")])
    assert sorted(m.source for m in found) == ["other", "otx"]


def test_an_offer_matches_once_however_many_probes_find_it(every_kind: Snapshot) -> None:
    twice = [offer(Lookup.DOMAIN, "evil.com"), offer(Lookup.DOMAIN, "evil.com")]
    assert len(every_kind.match(twice)) == 2  # two offers
    assert len(every_kind.match(twice[:1])) == 1


# --- a hit is a candidate until the value says so ----------------------------------------------


def test_a_digest_collision_is_no_match(store: FeedStore) -> None:
    """A base whose key for evil.com points at another row (what a 64-bit collision would do):
    the row's value is not the offer's, so nothing matches."""
    poll(store, obs(Kind.DOMAIN, "harmless.example"))
    real = Matcher(store).snapshot()
    row_id = int(real.base.ids[0])
    key = digest_key("domain", "evil.com")
    crafted = Snapshot(
        version=real.version,
        sources=real.sources,
        base=Index.of_columns(
            np.array([key], np.uint64),
            np.array([row_id], np.int64),
            real.base.sources[:1].copy(),
            (),
        ),
        delta=Index.empty(),
        tombstones=np.zeros(0, np.int64),
        fetch=lambda ids: observables_by_ids(store, ids),
        built="full",
    )
    assert crafted.base.lookup(np.array([key], np.uint64)) == [(0, row_id, 1)]  # a hit ...
    assert crafted.match([offer(Lookup.DOMAIN, "evil.com")]) == []  # ... but no match
    assert hits(crafted, Lookup.DOMAIN, "harmless.example") == []  # its own key is not there


def test_value_check() -> None:
    assert value_matches("cidr", "10.0.0.0/8", "10.255.255.255")
    assert not value_matches("cidr", "10.0.0.0/8", "11.0.0.0")
    assert not value_matches("cidr", "10.0.0.0/8", "not an address")
    assert not value_matches("cidr", "garbage", "10.0.0.1")
    assert value_matches("email", "Bad.Guy@evil.com", "bad.guy@EVIL.com")
    assert not value_matches("email", "Bad.Guy@evil.com", "bad.guy@evil.co")
    assert not value_matches("domain", "evil.com", "Evil.com")  # normalised on both sides
    assert value_matches("url", "http://a.example/", "http://a.example/")


# --- refreshes --------------------------------------------------------------------------------


def test_lifecycle_by_delta(db_store: FeedStore) -> None:
    """A new poll, an expiry, a value seen again after it expired, a source disabled and
    enabled, a kind no longer enforced: each seen after a refresh, by delta (the base is the
    same arrays), on SQLite and PostgreSQL."""
    store = db_store
    poll(store, obs(Kind.DOMAIN, "old.example"), obs(Kind.IPV4, "192.0.2.1"))
    matcher = Matcher(store)
    first = matcher.snapshot()
    assert first.built == "full" and len(first) == 2
    assert hits(first, Lookup.DOMAIN, "new.example") == []

    later = T0 + timedelta(days=20)
    poll(store, obs(Kind.DOMAIN, "new.example"), obs(Kind.CIDR, "203.0.113.0/24"), at=later)
    assert matcher.refresh()
    second = matcher.snapshot()
    assert second.built == "delta" and second.base is first.base and len(second.delta) == 2
    assert hits(second, Lookup.DOMAIN, "a.new.example") == ["new.example"]
    assert hits(second, Lookup.IP, "203.0.113.9") == ["203.0.113.0/24"]
    # the snapshot taken before is unchanged
    assert hits(first, Lookup.DOMAIN, "new.example") == [] and len(first) == 2
    assert not matcher.refresh()  # nothing moved

    assert store.expire("otx", T0 + timedelta(days=31)) == 2  # old.example, 192.0.2.1
    assert matcher.refresh()
    third = matcher.snapshot()
    assert third.built == "delta" and third.base is first.base
    assert sorted(third.tombstones.tolist()) == sorted(first.base.ids.tolist())
    assert hits(third, Lookup.DOMAIN, "old.example") == []
    assert hits(third, Lookup.IP, "192.0.2.1") == []
    assert hits(third, Lookup.DOMAIN, "new.example") == ["new.example"]

    poll(store, obs(Kind.DOMAIN, "old.example"), at=T0 + timedelta(days=32))  # live again
    assert matcher.refresh()
    assert hits(matcher.snapshot(), Lookup.DOMAIN, "old.example") == ["old.example"]

    set_source(store, enabled=False)
    assert matcher.refresh()
    off = matcher.snapshot()
    assert off.built == "delta" and off.base is first.base and not off.by_name["otx"].enabled
    assert hits(off, Lookup.DOMAIN, "old.example") == []
    assert hits(off, Lookup.IP, "203.0.113.9") == []

    set_source(store, enabled=True, enforce=frozenset({"cidr"}))
    assert matcher.refresh()
    on = matcher.snapshot()
    assert hits(on, Lookup.DOMAIN, "new.example") == []  # domains no longer enforced
    assert hits(on, Lookup.IP, "203.0.113.9") == ["203.0.113.0/24"]


def test_a_repoll_of_the_same_rows_changes_nothing_a_matcher_reads(store: FeedStore) -> None:
    poll(store, obs(Kind.DOMAIN, "evil.com"), obs(Kind.URL, "http://evil.com/"))
    before = store.version()
    poll(store, obs(Kind.DOMAIN, "evil.com", title="renamed"), at=T0 + timedelta(hours=1))
    assert store.version() > before  # the segment wrote rows
    assert len(changes_since(store, before)) == 0  # but none became live or expired
    assert len(changes_since(store, 0)) == 2


def test_a_spilled_segment_is_read_as_changes(db_store: FeedStore) -> None:
    """Rows a segment wrote before its commit (a spill) carry the commit's version too."""
    store = db_store
    matcher = Matcher(store)
    matcher.snapshot()
    store.segment_memory_budget = 1  # every upsert spills
    with store.segment("otx") as seg:
        seg.upsert([obs(Kind.DOMAIN, "one.example")], T0)
        seg.upsert([obs(Kind.DOMAIN, "two.example")], T0)
        seg.finish(T0)
    changes = changes_since(store, 0)
    assert len(changes) == 2 and changes.version == store.version()
    assert matcher.refresh()
    assert hits(matcher.snapshot(), Lookup.DOMAIN, "two.example") == ["two.example"]


def test_delta_and_tombstones_are_merged_into_a_new_base(store: FeedStore) -> None:
    poll(store, *(obs(Kind.DOMAIN, f"d{n}.example") for n in range(10)))
    matcher = Matcher(store, merge_fraction=0.5, merge_floor=0)
    first = matcher.snapshot()
    poll(store, obs(Kind.DOMAIN, "d10.example"), at=T0 + timedelta(days=20))
    matcher.refresh()
    assert matcher.snapshot().built == "delta"  # 1 pending ≤ half of 10
    poll(store, *(obs(Kind.DOMAIN, f"d{n}.example") for n in range(11, 16)), at=T0 + timedelta(20))
    matcher.refresh()
    merged = matcher.snapshot()
    assert merged.built == "merge" and merged.base is not first.base
    assert len(merged.delta) == 0 and len(merged.tombstones) == 0 and len(merged.base) == 16
    assert list(merged.base.keys) == sorted(merged.base.keys)
    for n in range(16):
        assert hits(merged, Lookup.DOMAIN, f"d{n}.example") == [f"d{n}.example"]
    assert store.expire("otx", T0 + timedelta(days=31)) == 10
    matcher.refresh()
    matcher.refresh()
    after = matcher.snapshot()
    assert after.built == "merge" and len(after.base) == 6  # expired entries left the base
    assert hits(after, Lookup.DOMAIN, "d0.example") == []
    assert hits(after, Lookup.DOMAIN, "d15.example") == ["d15.example"]


def test_a_deleted_source_leaves_the_base(store: FeedStore) -> None:
    store.add_source(Source(name="gone", hostname="g.example", collection="c"))
    poll(store, obs(Kind.DOMAIN, "kept.example"), obs(Kind.CIDR, "10.0.0.0/8"))
    poll(store, obs(Kind.DOMAIN, "dropped.example"), obs(Kind.CIDR, "10.1.0.0/16"), source="gone")
    matcher = Matcher(store)
    assert len(matcher.snapshot()) == 4
    store.delete_source("gone")
    assert matcher.refresh()
    snap = matcher.snapshot()
    assert snap.built == "merge" and len(snap) == 2 and "gone" not in snap.by_name
    assert hits(snap, Lookup.DOMAIN, "dropped.example") == []
    assert hits(snap, Lookup.IP, "10.1.2.3") == ["10.0.0.0/8"]


def test_the_version_is_looked_at_every_check_every_seconds_of_the_clock(
    store: FeedStore,
) -> None:
    now = [100.0]
    matcher = Matcher(store, clock=lambda: now[0], check_every=5.0)
    first = matcher.snapshot()
    poll(store, obs(Kind.DOMAIN, "evil.com"))
    now[0] += 4.9
    assert matcher.snapshot() is first  # not looked yet
    now[0] += 0.1
    second = matcher.snapshot()
    assert second is not first and hits(second, Lookup.DOMAIN, "evil.com") == ["evil.com"]
    assert matcher.snapshot() is second


def test_a_rebuild_reads_the_whole_store(store: FeedStore) -> None:
    poll(store, obs(Kind.DOMAIN, "evil.com"))
    matcher = Matcher(store)
    matcher.snapshot()
    poll(store, obs(Kind.DOMAIN, "worse.com"), at=T0 + timedelta(hours=1))
    rebuilt = matcher.rebuild()
    assert rebuilt.built == "full" and len(rebuilt.delta) == 0 and len(rebuilt) == 2
    assert matcher.snapshot() is rebuilt


def test_memory_is_small(store: FeedStore) -> None:
    poll(store, *(obs(Kind.DOMAIN, f"d{n}.example") for n in range(1000)))
    snap = Matcher(store).snapshot()
    assert len(snap) == 1000 and snap.nbytes <= 32 * 1000 + 1024  # ≤ 32 B each, plus headers


# --- a cluster --------------------------------------------------------------------------------


def test_two_nodes_see_one_poll(pg_url: str) -> None:
    """Two stores on one PostgreSQL database (two nodes): a poll through one and an expiry
    through the other reach both matchers."""
    one = open_store(pg_url, "otx")
    two = FeedStore(engine(pg_url))
    try:
        first, second = Matcher(one), Matcher(two)
        assert hits(first.snapshot(), Lookup.DOMAIN, "evil.com") == []
        assert hits(second.snapshot(), Lookup.DOMAIN, "evil.com") == []
        poll(one, obs(Kind.DOMAIN, "evil.com"), obs(Kind.EMAIL, "Bad@evil.com"))
        for matcher in (first, second):
            assert matcher.refresh()
            snap = matcher.snapshot()
            assert snap.built == "delta"
            assert hits(snap, Lookup.DOMAIN, "www.evil.com") == ["evil.com"]
            assert hits(snap, Lookup.EMAIL, "bad@EVIL.com") == ["Bad@evil.com"]
        assert two.expire("otx", T0 + timedelta(days=31)) == 2
        for matcher in (first, second):
            assert matcher.refresh()
            assert hits(matcher.snapshot(), Lookup.DOMAIN, "evil.com") == []
    finally:
        one.close()
        two.close()


def _all(found: list[Match]) -> list[tuple[str, str]]:
    return [(m.kind, m.value) for m in found]


def test_every_kind_at_once(every_kind: Snapshot) -> None:
    offers = [
        offer(Lookup.IP, "198.51.100.1", Part.CLIENT_IP),
        offer(Lookup.EMAIL, "bad.guy@evil.com", Part.ENVELOPE_FROM),
        offer(Lookup.DOMAIN, "mail.evil.com", Part.FROM),
        offer(Lookup.URL, "http://evil.com/x?y=1"),
        offer(Lookup.SHA1, "da39a3ee5e6b4b0d3255bfef95601890afd80709", Part.ATTACHMENT),
    ]
    assert _all(every_kind.match(offers)) == [
        ("cidr", "198.51.100.0/24"),
        ("cidr", "198.51.0.0/16"),
        ("email", "Bad.Guy@evil.com"),
        ("domain", "evil.com"),
        ("url", "http://evil.com/x?y=1"),
        ("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
    ]

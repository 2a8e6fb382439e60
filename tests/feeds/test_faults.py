"""The poller against a real hub and OpenTAXII through a fault-injecting proxy (issue 5, item 7).

For every fault: one poll with the fault active must fail (or cope) and say so in the source's
status and the threat-feed log, keeping only whole segments; a second poll without the fault
must leave the store equal to what the server holds (nothing lost, nothing doubled) with the
watermark at the end of the window. The truth is read straight from the server, without the
proxy, by our client and STIX reader over the same window.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fault_proxy import FaultProxy

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import PollResult, poll_source, segments
from feedgate.feeds.sources import Source, client_options
from feedgate.feeds.store import FeedStore
from feedgate.hub.app import create_app
from feedgate.hub.model import Pulse
from feedgate.hub.seed import generate
from feedgate.hub.store import HubStore
from feedgate.stix import read_observables
from feedgate.taxii.client import TaxiiClient

#: The tests' present: the real clock at the start (to the second), since the hub (its labels,
#: its indicators' expiry) and the processes the tests start run on the real clock; every
#: date below is relative to it, so no day of the calendar can overtake one.
NOW = datetime.now(UTC).replace(microsecond=0)
LATER = NOW + timedelta(hours=1)
AGE = timedelta(days=60)
SEGMENT = timedelta(days=7)
PULSES = 8

Pair = tuple[str, str]


def fast_client(source: Source) -> TaxiiClient:
    """Our client for ``source`` with a 1 s read timeout and no transport-level retries, so
    every fault reaches the poller's own retry loop at once."""
    return TaxiiClient(**client_options(source), timeout=(2, 1), retries=0)


def truth(
    source: Source, host: str, port: int, begin: datetime, end: datetime, path: str | None = None
) -> tuple[set[Pair], int]:
    """(kind, value) of every observable the server holds in (begin, end], and its blocks,
    read directly from the server."""
    pairs: set[Pair] = set()
    blocks = 0
    direct = replace(source, hostname=host, port=port)
    # Patient: this reads the reference, with no fault in the way, and a loaded machine (the
    # suite runs a worker per core) can keep OpenTAXII over a second (CI saw it).
    with TaxiiClient(**client_options(direct), timeout=(10, 60), retries=2) as client:
        for block in client.poll(source.collection, begin, end, uri=path or source.poll_path):
            blocks += 1
            pairs |= {(o.kind.value, o.value) for o in read_observables(io.BytesIO(block.content))}
    return pairs, blocks


def stored(feeds: FeedStore, name: str) -> list[Pair]:
    return [(o.kind, o.value) for o in feeds.iter_observables(source=name)]


def messages(feeds: FeedStore, name: str) -> list[str]:
    return [f"{e.level}: {e.message}" for e in feeds.log_entries(name)]


def _naive(moment: datetime) -> datetime:
    """The hub's convention: naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def hub_pulses() -> list[Pulse]:
    """The pulses of the ``hub`` fixture (its subscriber polls the public ones)."""
    return list(
        generate(
            PULSES, 5, author="AlienVault", seed=3, until=_naive(NOW - timedelta(days=5)), months=1
        )
    )


@dataclass
class Hub:
    host: str
    port: int
    key: str


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    store = HubStore(db.engine(str(tmp_path_factory.mktemp("hub") / "hub.db")))
    store.add_pulses(hub_pulses())
    store.set_default_author("AlienVault")
    _, key = store.create_user("gateway")
    with serving(create_app(store, page_size=2)) as url:
        host, port = url.removeprefix("http://").split(":")
        yield Hub(host, int(port), key)


@dataclass
class Rig:
    feeds: FeedStore
    log: ThreatFeedLog
    proxy: FaultProxy
    source: Source
    upstream: tuple[str, int]
    now: datetime = NOW  # the end of the first poll's window

    def poll(self, now: datetime, source: Source | None = None) -> PollResult:
        return poll_source(
            self.feeds,
            source or self.source,
            self.log,
            now=lambda: now,
            client_factory=fast_client,
            sleep=lambda _s: None,
        )

    def truth(self, begin: datetime, end: datetime, path: str | None = None) -> set[Pair]:
        return truth(self.source, *self.upstream, begin, end, path)[0]


def make_rig(tmp_path: Path, upstream: tuple[str, int], proxy: FaultProxy, **fields: object) -> Rig:
    feeds = FeedStore(db.engine(str(tmp_path / "feeds.db")))
    log = ThreatFeedLog(feeds, tmp_path / "threat-feed.log")
    source = Source(
        name="feed", hostname=proxy.host, port=proxy.port, use_https=False, max_retries=1, **fields
    )  # type: ignore[arg-type]
    feeds.add_source(source)
    return Rig(feeds, log, proxy, source, upstream)


@pytest.fixture
def hub_rig(hub: Hub, tmp_path: Path) -> Iterator[Rig]:
    with FaultProxy(hub.host, hub.port) as proxy:
        yield make_rig(
            tmp_path,
            (hub.host, hub.port),
            proxy,
            collection="user_AlienVault",
            username=hub.key,
            password="x",
            age=AGE,
            poll_segment=SEGMENT,
        )


def assert_whole_segments(rig: Rig, begin: datetime, end: datetime) -> None:
    """After a failed poll: the watermark is a segment boundary and the store holds exactly
    what the server has up to it (the failed segment's part-read blocks were not kept)."""
    name = rig.source.name
    mark = rig.feeds.watermark(name)
    bounds = {stop for _, stop in segments(begin, end, rig.source.poll_segment)}
    assert mark is None or (mark in bounds and mark < end)
    have = stored(rig.feeds, name)
    assert len(have) == len(set(have))
    assert set(have) == (rig.truth(begin, mark) if mark else set())


def assert_caught_up(
    rig: Rig, first: PollResult, second: PollResult, begin: datetime, end: datetime
) -> None:
    """After the poll without the fault: the store equals the server, nothing doubled."""
    name = rig.source.name
    assert second.ok, second.error
    assert rig.feeds.status(name).result == "ok"
    assert rig.feeds.watermark(name) == end
    have = stored(rig.feeds, name)
    expected = rig.truth(begin, end)
    assert expected, "the window must hold data for the test to mean something"
    assert len(have) == len(set(have)), "an observable is stored twice"
    assert set(have) == expected
    assert first.new + second.new == len(expected)  # nothing counted in twice either
    assert sum(rig.feeds.count_observables(name).values()) == len(expected)


# --- the hub ---------------------------------------------------------------------------------

# (kind, argument, what the status and log must say). Byte offsets land in the body of a
# two-block Poll_Response (a few kB): after its first block for reset and stall.
HUB_FAULTS = [
    pytest.param("status", 500, "HTTP 500", id="http-500"),
    pytest.param("status", 502, "HTTP 502", id="http-502"),
    pytest.param("status", 504, "HTTP 504", id="http-504"),
    pytest.param("reset", 3000, "Connection reset by peer", id="reset-mid-response"),
    pytest.param("truncate", 2500, "cannot be read", id="truncated-xml"),
    pytest.param("stall", 3000, "no answer within the read timeout", id="read-timeout"),
]


@pytest.mark.parametrize(("kind", "arg", "said"), HUB_FAULTS)
def test_hub_fault_then_recovery(hub_rig: Rig, kind: str, arg: int, said: str) -> None:
    rig = hub_rig
    begin = NOW - AGE
    # the first five segments pass (some hold data), then every request gets the fault
    rig.proxy.script(kind, arg, skip=6)  # type: ignore[arg-type]
    first = rig.poll(NOW)
    assert not first.ok and said in (first.error or ""), first.error
    hit = rig.proxy.faults()
    # The attempt and its one retry: the same request with the same answer. When the fault only
    # shows once the answer is parsed (truncated XML), the next part may have been requested
    # already after each of them (parts are polled ahead while one is parsed and stored).
    assert [s for s in hit if s == hit[0]] == [hit[0], hit[0]] and len(hit) <= 4, hit
    if kind in ("reset", "stall", "truncate"):  # cut into a poll answer, past its first block
        assert all(s.message in ("Poll_Request", "Poll_Fulfillment") for s in hit)
        assert all(s.size > arg + 1000 for s in hit), hit
    status = rig.feeds.status("feed")
    assert status.result == "error" and said in (status.error or "")
    log = messages(rig.feeds, "feed")
    assert any(m.startswith("warning:") and said in m and "retry 1 of 1" in m for m in log), log
    assert any(m.startswith("error:") and said in m and "giving up" in m for m in log), log
    assert_whole_segments(rig, begin, NOW)
    assert rig.feeds.watermark("feed") is not None, "the fault should strike after some data"

    rig.proxy.clear()
    second = rig.poll(LATER)
    assert_caught_up(rig, first, second, begin, LATER)


def test_hub_one_502_is_retried_and_the_poll_succeeds(hub_rig: Rig) -> None:
    rig = hub_rig
    rig.proxy.script("status", 502, skip=6, times=1)
    result = rig.poll(NOW)
    assert result.ok, result.error
    log = messages(rig.feeds, "feed")
    assert any(m.startswith("warning:") and "HTTP 502" in m and "retry 1 of 1" in m for m in log)
    assert rig.feeds.status("feed").result == "ok"
    have = stored(rig.feeds, "feed")
    assert len(have) == len(set(have)) and set(have) == rig.truth(NOW - AGE, NOW)
    assert result.new == len(have)


def test_hub_reset_mid_second_part_keeps_nothing_of_the_segment(hub_rig: Rig) -> None:
    """A segment of several parts: the first part's blocks were read when the second part
    broke; none of them may be stored, and the next poll reads the segment whole."""
    rig = hub_rig
    rig.proxy.script("reset", 3000, skip=_first_fulfillment(rig))
    first = rig.poll(NOW)
    assert not first.ok and "Connection reset by peer" in (first.error or "")
    assert rig.proxy.faults()[0].message == "Poll_Fulfillment"
    assert_whole_segments(rig, NOW - AGE, NOW)
    rig.proxy.clear()
    assert_caught_up(rig, first, rig.poll(LATER), NOW - AGE, LATER)


def _first_fulfillment(rig: Rig) -> int:
    """How many requests a clean poll makes before its first Poll_Fulfillment (dry run into a
    scratch source, so the real one is untouched)."""
    scratch = replace(rig.source, name="scratch")
    rig.feeds.add_source(scratch)
    start = len(rig.proxy.seen)
    rig.poll(NOW, scratch)
    names = [s.message for s in rig.proxy.seen[start:]]
    rig.feeds.delete_source("scratch")
    assert "Poll_Fulfillment" in names
    return names.index("Poll_Fulfillment")


def test_hub_lying_about_more(hub_rig: Rig) -> None:
    rig = hub_rig
    rig.proxy.lie_more = True
    first = rig.poll(NOW)
    assert first.ok, first.error
    assert rig.feeds.status("feed").result == "ok"
    assert any(s.message == "Poll_Fulfillment" for s in rig.proxy.seen)
    assert rig.feeds.watermark("feed") == NOW
    have = stored(rig.feeds, "feed")
    assert len(have) == len(set(have)) and set(have) == rig.truth(NOW - AGE, NOW)
    # no block read twice by following the lie (the gateway's blocks: the public pulses)
    assert first.blocks == truth(rig.source, *rig.upstream, NOW - AGE, NOW)[1]
    rig.proxy.clear()
    assert_caught_up(rig, first, rig.poll(LATER), NOW - AGE, LATER)


@pytest.mark.parametrize(
    ("wrong", "said"),
    [
        ({"username": "not-a-key", "password": None}, "UNAUTHORIZED"),
        ({"poll_path": "/taxii/pol"}, "HTTP 404"),
    ],
    ids=["credentials", "poll-path"],
)
def test_hub_refusal_then_the_right_source(hub_rig: Rig, wrong: dict[str, Any], said: str) -> None:
    rig = hub_rig
    source = replace(rig.source, **wrong)
    rig.feeds.update_source(source)
    first = rig.poll(NOW, source)
    assert not first.ok and said in (first.error or "")
    status = rig.feeds.status("feed")
    assert status.result == "error" and said in (status.error or "")
    log = " | ".join(messages(rig.feeds, "feed"))
    assert said in log and "not-a-key" not in log
    # A refusal comes back on every attempt: reported at once, not after the backoffs.
    assert "not retried: the server refuses the request" in log and "retry 1" not in log
    assert rig.feeds.watermark("feed") is None and stored(rig.feeds, "feed") == []
    rig.feeds.update_source(rig.source)
    assert_caught_up(rig, first, rig.poll(LATER), NOW - AGE, LATER)


def test_hub_empty_collection(hub_rig: Rig) -> None:
    rig = hub_rig
    empty = replace(rig.source, collection="user_gateway")
    rig.feeds.update_source(empty)
    result = rig.poll(NOW, empty)
    assert result.ok and result.blocks == result.read == 0, result.error
    assert rig.feeds.status("feed").result == "ok"
    assert rig.feeds.watermark("feed") == NOW
    assert stored(rig.feeds, "feed") == []
    assert any(m.startswith("info: poll done:") for m in messages(rig.feeds, "feed"))


# --- OpenTAXII ---------------------------------------------------------------------------------

OT_BLOCKS = 7
_OT_DAYS = itertools.count()


@pytest.fixture
def ot_rig(opentaxii, tmp_path: Path) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    from peers import load_blocks

    # a window of its own in `big` (other tests add blocks there too, later in time)
    start = datetime(2019, 3, 1, 12, tzinfo=UTC) + timedelta(days=next(_OT_DAYS))
    loaded = load_blocks(opentaxii, opentaxii.big_collection, OT_BLOCKS, start=start)
    assert loaded.n == OT_BLOCKS
    with FaultProxy(opentaxii.host, opentaxii.port) as proxy:
        rig = make_rig(
            tmp_path,
            (opentaxii.host, opentaxii.port),
            proxy,
            collection=opentaxii.big_collection,
            poll_path=opentaxii.poll_path,
            username=opentaxii.username,
            password=opentaxii.password,
            age=timedelta(hours=2),
            poll_segment=timedelta(minutes=30),
        )
        rig.now = start + timedelta(hours=1)
        yield rig


OT_CASES = {
    "http-502": ("status", 502, "HTTP 502"),
    "reset-mid-response": ("reset", 1500, "Connection reset by peer"),
}


@pytest.mark.parametrize("case", [pytest.param(k, id=k) for k in OT_CASES])
def test_opentaxii_fault_then_recovery(ot_rig: Rig, case: str) -> None:
    rig = ot_rig
    now = rig.now
    begin = now - rig.source.age
    expected, blocks = truth(rig.source, *rig.upstream, begin, now)
    assert blocks == OT_BLOCKS and len(expected) == OT_BLOCKS
    kind, arg, said = OT_CASES[case]
    # the segments before the blocks pass, then the fault strikes in the segment that has them
    rig.proxy.script(kind, arg, skip=2)  # type: ignore[arg-type]
    first = rig.poll(now)
    assert not first.ok and said in (first.error or ""), first.error
    assert all(s.size > arg for s in rig.proxy.faults() if kind == "reset")
    status = rig.feeds.status("feed")
    assert status.result == "error" and said in (status.error or "")
    log = messages(rig.feeds, "feed")
    assert any(m.startswith("error:") and said in m and "giving up" in m for m in log), log
    assert_whole_segments(rig, begin, now)
    rig.proxy.clear()
    later = now + timedelta(minutes=5)
    assert_caught_up(rig, first, rig.poll(later), begin, later)


def test_opentaxii_lying_about_more(ot_rig: Rig) -> None:
    rig = ot_rig
    now = rig.now
    begin = now - rig.source.age
    rig.proxy.lie_more = True
    first = rig.poll(now)
    assert first.ok, first.error
    assert first.blocks == OT_BLOCKS
    assert any(s.message == "Poll_Fulfillment" for s in rig.proxy.seen)
    assert rig.feeds.status("feed").result == "ok"
    assert rig.feeds.watermark("feed") == now
    rig.proxy.clear()
    later = now + timedelta(minutes=5)
    assert_caught_up(rig, first, rig.poll(later), begin, later)


def test_opentaxii_empty_collection(opentaxii, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultProxy(opentaxii.host, opentaxii.port) as proxy:
        rig = make_rig(
            tmp_path,
            (opentaxii.host, opentaxii.port),
            proxy,
            collection=opentaxii.empty_collection,
            poll_path=opentaxii.poll_path,
            username=opentaxii.username,
            password=opentaxii.password,
            age=timedelta(days=2),
            poll_segment=timedelta(days=1),
        )
        result = rig.poll(NOW)
    assert result.ok and result.read == 0, result.error
    assert rig.feeds.status("feed").result == "ok" and rig.feeds.watermark("feed") == NOW
    assert stored(rig.feeds, "feed") == []

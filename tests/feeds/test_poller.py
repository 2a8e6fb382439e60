"""The poller against a real hub on 127.0.0.1: windows, segments, watermark, retries, log; the
feed store on SQLite and on a real PostgreSQL (``any_db``, tests/pgserver.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import poll_source, segments
from feedgate.feeds.sources import Source, client_options
from feedgate.feeds.store import FeedStore
from feedgate.hub.app import create_app
from feedgate.hub.seed import generate
from feedgate.hub.store import HubStore
from feedgate.taxii.client import TaxiiClient
from http_raw import closed_port
from pgserver import Database

NOW = datetime.now(UTC).replace(microsecond=0)  # the hub runs on the real clock: see test_faults


@dataclass
class Setup:
    hub: HubStore
    feeds: FeedStore
    log: ThreatFeedLog
    source: Source


@pytest.fixture
def setup(tmp_path: Path, any_db: Database) -> Iterator[Setup]:
    hub = HubStore(db.engine(str(tmp_path / "hub.db")))
    hub.add_pulses(
        generate(
            8,
            5,
            author="AlienVault",
            seed=3,
            until=(NOW - timedelta(days=5)).replace(tzinfo=None),
            months=1,
        )
    )
    hub.set_default_author("AlienVault")
    _, key = hub.create_user("gateway")
    feeds = FeedStore(db.engine(any_db.url))
    log = ThreatFeedLog(feeds, tmp_path / "threat-feed.log")
    with serving(create_app(hub, page_size=3)) as url:
        host, port = url.removeprefix("http://").split(":")
        source = Source(
            name="otx",
            hostname=host,
            port=int(port),
            use_https=False,
            collection="user_AlienVault",
            username=key,
            password="x",
            age=timedelta(days=60),
            poll_segment=timedelta(days=7),
        )
        feeds.add_source(source)
        yield Setup(hub, feeds, log, source)


def test_first_poll_reads_everything_in_segments_then_nothing_new(setup: Setup) -> None:
    result = poll_source(setup.feeds, setup.source, setup.log, now=lambda: NOW)
    assert result.ok, result.error
    assert result.segments == 9  # 60 days in 7-day segments
    pulses = [e.pulse for e in setup.hub.pulses_page("AlienVault", limit=100)]
    assert result.blocks == sum(p.public for p in pulses) > 0  # the gateway's: public ones
    assert result.read == result.new > 0
    assert setup.feeds.watermark("otx") == NOW
    again = poll_source(setup.feeds, setup.source, setup.log, now=lambda: NOW + timedelta(hours=1))
    assert again.ok and again.blocks == 0 and again.new == 0
    lines = [e.message for e in setup.feeds.log_entries("otx")]
    assert any("observables read" in line and " new, " in line for line in lines)
    assert any(line.startswith("poll done:") for line in lines)


def test_a_poll_writes_what_the_source_holds_to_the_history(setup: Setup) -> None:
    """At its end, after its expiry: the live counts per kind, as count_observables has them;
    a later poll the same UTC day replaces them, one a day later adds the next day's."""
    poll_source(setup.feeds, setup.source, setup.log, now=lambda: NOW)
    live = setup.feeds.count_observables("otx")
    assert sum(live.values()) > 0
    first = setup.feeds.held_history()
    assert {(h.source, h.kind, h.held) for h in first} == {("otx", k, n) for k, n in live.items()}
    assert {h.at for h in first} == {NOW}
    day = datetime.combine(NOW.date(), datetime.min.time(), UTC)
    same_day = day + timedelta(hours=23, minutes=59)  # later than NOW, the same UTC day
    poll_source(setup.feeds, setup.source, setup.log, now=lambda: same_day)
    assert {h.at for h in setup.feeds.held_history()} == {same_day}
    tomorrow = same_day + timedelta(minutes=2)
    poll_source(setup.feeds, setup.source, setup.log, now=lambda: tomorrow)
    assert sorted({h.at for h in setup.feeds.held_history()}) == [same_day, tomorrow]


def test_new_pulses_arrive_with_the_next_poll(setup: Setup) -> None:
    poll_source(setup.feeds, setup.source, setup.log, now=lambda: NOW)
    before = sum(setup.feeds.count_observables("otx").values())
    new = list(
        generate(
            2,
            4,
            author="AlienVault",
            seed=45,
            until=(NOW + timedelta(hours=6)).replace(tzinfo=None),
            months=1,
        )
    )
    setup.hub.add_pulses(new, backdate=False)
    # published now (labels are never behind the present), polled an hour later
    later = datetime.now(UTC) + timedelta(hours=1)
    result = poll_source(setup.feeds, setup.source, setup.log, now=lambda: later)
    assert result.ok and result.blocks == sum(p.public for p in new) > 0 and result.new > 0
    # the first poll's observables age out if `later` is more than an age after NOW (any day
    # from NOW + age on): what is live is what was, plus the new, less what expired
    live = sum(setup.feeds.count_observables("otx").values())
    assert live == before + result.new - result.expired


def test_empty_collection_reads_zero_and_is_not_an_error(setup: Setup) -> None:
    source = replace(setup.source, name="mine", collection="user_gateway")
    setup.feeds.add_source(source)
    result = poll_source(setup.feeds, source, setup.log, now=lambda: NOW)
    assert result.ok and result.read == 0
    assert setup.feeds.status("mine").result == "ok"


def test_a_failing_segment_is_retried_with_backoff(setup: Setup) -> None:
    source = replace(setup.source, name="down", port=closed_port(), max_retries=2)
    setup.feeds.add_source(source)
    delays: list[float] = []
    result = poll_source(
        setup.feeds,
        source,
        setup.log,
        now=lambda: NOW,
        sleep=delays.append,
        client_factory=lambda s: TaxiiClient(**client_options(s), retries=0),
    )
    assert not result.ok and delays == [2.0, 4.0]
    said = [e.message for e in setup.feeds.log_entries("down")]
    assert sum("retry" in m for m in said) == 2, said


def test_wrong_credentials_fail_clearly_at_once(setup: Setup) -> None:
    source = replace(setup.source, name="bad", password=None, username="wrong-key", max_retries=2)
    setup.feeds.add_source(source)
    delays: list[float] = []
    result = poll_source(setup.feeds, source, setup.log, now=lambda: NOW, sleep=delays.append)
    assert not result.ok and "UNAUTHORIZED" in (result.error or "")
    assert delays == []  # the same request gets the same refusal: no backoff to sit through
    status = setup.feeds.status("bad")
    assert status.result == "error" and "UNAUTHORIZED" in (status.error or "")
    assert setup.feeds.watermark("bad") is None  # nothing moved
    assert "wrong-key" not in " ".join(e.message for e in setup.feeds.log_entries("bad"))


def test_segments_cover_the_window_exactly() -> None:
    begin = datetime(2026, 1, 1, tzinfo=UTC)
    end = begin + timedelta(days=2, hours=5)
    parts = list(segments(begin, end, timedelta(days=1)))
    assert parts[0][0] == begin and parts[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert len(parts) == 3


def test_a_cancelled_poll_stops_before_the_next_segment_keeping_the_ones_before(
    setup: Setup,
) -> None:
    """What the scheduler does when this node loses the source's lease mid-poll."""
    asked: list[int] = []

    def cancelled() -> str | None:
        asked.append(1)
        return "this node lost the source's lease" if len(asked) > 3 else None

    result = poll_source(setup.feeds, setup.source, setup.log, now=lambda: NOW, cancelled=cancelled)
    assert not result.ok and result.segments == 3
    assert result.error == "stopped: this node lost the source's lease"
    begin = NOW - setup.source.age
    assert setup.feeds.watermark("otx") == begin + 3 * setup.source.poll_segment
    assert setup.feeds.status("otx").result == "error"
    lines = [e.message for e in setup.feeds.log_entries("otx")]
    assert any("not polled: this node lost the source's lease" in line for line in lines)
    again = poll_source(setup.feeds, setup.source, setup.log, now=lambda: NOW)
    assert again.ok and again.segments == 6  # the rest of the window, from the watermark


def test_values_the_reader_leaves_out_are_counted_with_their_reasons(setup: Setup) -> None:
    """A pulse of four indicators, one of them the domain ``com`` (no domain): the segment's
    line and the poll-done line say it was skipped and why, as ``feedgate stix extract`` does,
    and the observables read stay the three stored."""
    from feedgate.hub.model import Indicator, Pulse

    made = NOW - timedelta(days=2)
    values = ("skip-a.example", "skip-b.example", "com", "skip-c.example")
    pulse = Pulse(
        id="5f0c0ffee0000000000000aa",
        name="one value no domain",
        author_name="gateway",
        created=made.replace(tzinfo=None),
        modified=made.replace(tzinfo=None),
        indicators=tuple(
            Indicator(indicator=v, type="domain", created=made.replace(tzinfo=None)) for v in values
        ),
    )
    setup.hub.add_pulses([pulse])
    source = replace(setup.source, name="mine", collection="user_gateway", age=timedelta(days=7))
    setup.feeds.add_source(source)
    result = poll_source(setup.feeds, source, setup.log, now=lambda: NOW)
    assert result.ok, result.error
    assert (result.read, result.new) == (3, 3)
    assert result.skipped == {"invalid domain value": 1}
    lines = [e.message for e in setup.feeds.log_entries("mine")]
    segment = [line for line in lines if line.startswith("segment ") and "3 observables" in line]
    assert len(segment) == 1
    assert segment[0].endswith(
        ": 1 blocks, 3 observables read, 3 new, 0 updated; 1 skipped: 1 × invalid domain value"
    )
    done = next(line for line in lines if line.startswith("poll done:"))
    assert "3 observables read, 3 new, 0 updated, 0 expired in " in done
    assert done.endswith(" s; 1 skipped: 1 × invalid domain value")

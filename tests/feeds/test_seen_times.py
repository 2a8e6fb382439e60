"""When feedgate saw an observable, and what a poll's log figures add up to: polls of a real hub
on 127.0.0.1 with an injected clock, into SQLite and a real PostgreSQL (``any_db``)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import poll_source
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore, StoredObservable
from feedgate.hub.app import create_app
from feedgate.hub.model import Indicator, Pulse
from feedgate.hub.seed import generate
from feedgate.hub.store import HubStore
from pgserver import Database

AGE = timedelta(days=60)


@dataclasses.dataclass
class Feed:
    hub: HubStore
    feeds: FeedStore
    log: ThreatFeedLog
    source: Source
    clock: datetime  # the poll's "now": the ingest clock


@pytest.fixture
def feed(tmp_path: Path, any_db: Database) -> Iterator[Feed]:
    # Not a segment's end: the window's end. The pulses are published before it.
    clock = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=7)
    hub = HubStore(db.engine(str(tmp_path / "hub.db")))
    hub.set_default_author("AlienVault")
    _, key = hub.create_user("gateway")
    feeds = FeedStore(db.engine(any_db.url))
    log = ThreatFeedLog(feeds, write_file=False)
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
            age=AGE,
            poll_segment=timedelta(days=7),
        )
        feeds.add_source(source)
        yield Feed(hub, feeds, log, source, clock)
    feeds.close()


def pulses(*indicator_sets: tuple[str, ...]) -> list[Pulse]:
    """Public pulses published over the last month, the n-th with the domains of the n-th set
    (generated pulses have random kinds, expirations and inactive indicators)."""
    until = datetime.now(UTC).replace(tzinfo=None)
    made = generate(len(indicator_sets), 1, author="AlienVault", seed=5, until=until, months=1)
    return [
        dataclasses.replace(
            pulse,
            public=True,
            indicators=tuple(
                Indicator(indicator=name, type="domain", created=pulse.created) for name in names
            ),
        )
        for pulse, names in zip(made, indicator_sets, strict=True)
    ]


def stored(feeds: FeedStore) -> dict[str, StoredObservable]:
    return {o.value: o for o in feeds.iter_observables("otx", live_only=False)}


def test_first_and_last_seen_are_when_the_poll_saw_them_not_a_segment_end(feed: Feed) -> None:
    """They were the end of the segment the value came in (an IP polled today showed a date
    weeks ago, or in the future, as the window said), and so it aged from there."""
    sets = [tuple(f"host{n}-{i}.example" for i in range(3)) for n in range(6)]
    feed.hub.add_pulses(pulses(*sets))
    first = poll_source(feed.feeds, feed.source, feed.log, now=lambda: feed.clock)
    assert first.ok and first.segments == 9, first.error
    rows = stored(feed.feeds)
    assert sorted(rows) == sorted(name for names in sets for name in names)
    assert {(o.first_seen, o.last_seen) for o in rows.values()} == {(feed.clock, feed.clock)}

    # Seen again an hour later (in a pulse published since): last_seen moves, first_seen stays.
    again = feed.clock + timedelta(hours=1)
    value = sets[0][0]
    (republished,) = pulses((value,))
    modified = (feed.clock + timedelta(minutes=30)).replace(tzinfo=None)
    republished = dataclasses.replace(republished, id="f" * 24, modified=modified)
    feed.hub.add_pulses([republished])
    second = poll_source(feed.feeds, feed.source, feed.log, now=lambda: again)
    assert second.ok and (second.new, second.updated) == (0, 1), second.error
    rows = stored(feed.feeds)
    assert (rows[value].first_seen, rows[value].last_seen) == (feed.clock, again)

    # An observable lives `age` after it was last seen (design.md "Feed sources and polling").
    assert feed.feeds.expire("otx", feed.clock + AGE - timedelta(minutes=1)) == 0
    assert feed.feeds.expire("otx", feed.clock + AGE + timedelta(minutes=1)) == len(rows) - 1
    assert [o.value for o in feed.feeds.iter_observables("otx")] == [value]
    assert feed.feeds.expire("otx", again + AGE + timedelta(minutes=1)) == 1


FIGURES = re.compile(
    r"(\d+) observables read(?: \((\d+) repeats? within (?:the|a) segment\))?, (\d+) new,"
    r" (\d+) updated"
)


def test_the_log_figures_add_up_and_say_what_repeats_within_a_segment_are(feed: Feed) -> None:
    """ "2891 read, 2833 new, 45 updated": a value twice in one segment is stored once, and the
    line did not say so."""
    source = dataclasses.replace(feed.source, poll_segment=AGE)  # one segment
    feed.feeds.update_source(source)
    # The third pulse repeats two of the first one's domains: stored once each.
    feed.hub.add_pulses(
        pulses(
            ("a.example", "b.example", "c.example"),
            ("d.example",),
            ("e.example", "a.example", "b.example"),
        )
    )
    result = poll_source(feed.feeds, source, feed.log, now=lambda: feed.clock)
    assert result.ok, result.error
    assert len(stored(feed.feeds)) == 5
    lines = [e.message for e in feed.feeds.log_entries("otx")]
    (segment,) = [line for line in lines if line.startswith("segment ")]
    (done,) = [line for line in lines if line.startswith("poll done:")]
    for line in (segment, done):
        found = FIGURES.search(line)
        assert found, line
        assert tuple(int(n or 0) for n in found.groups()) == (7, 2, 5, 0), line

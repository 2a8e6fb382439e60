"""kill -9 of the poller mid-segment (issue 5, item 7): a poll runs in its own process against a
hub slowed down by the fault proxy, is killed with SIGKILL while a segment is being read, and a
poll in this process then finishes the job. The store must be intact (PRAGMA integrity_check),
have kept only whole segments, and end equal to what the hub holds: nothing lost, nothing
doubled."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fault_proxy import FaultProxy
from test_faults import AGE, LATER, NOW, SEGMENT, Hub, Pair, fast_client, hub_pulses, stored, truth

from feedgate import db
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import poll_source, segments
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore

# hub is a module-scoped fixture of test_faults; importing it makes it available here
from test_faults import hub  # noqa: F401  # isort: skip

CHILD = """
import json, sys
from pathlib import Path
from datetime import datetime, timedelta
from feedgate import db
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import poll_source
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore

args = json.loads(sys.argv[1])
feeds = FeedStore(db.engine(args["db"]))
log = ThreatFeedLog(feeds, Path(args["log"]))
source = Source(
    name="feed", hostname=args["host"], port=args["port"], use_https=False,
    collection="user_AlienVault", username=args["key"], password="x",
    age=timedelta(seconds=args["age"]), poll_segment=timedelta(seconds=args["segment"]),
)
poll_source(feeds, source, log, now=lambda: datetime.fromisoformat(args["now"]))
print("finished", flush=True)
"""


def test_kill9_mid_segment_then_restart(hub: Hub, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "feeds.db"
    feeds = FeedStore(db.engine(str(path)))
    log = ThreatFeedLog(feeds, tmp_path / "threat-feed.log")
    with FaultProxy(hub.host, hub.port) as proxy:
        source = Source(
            name="feed",
            hostname=proxy.host,
            port=proxy.port,
            use_https=False,
            collection="user_AlienVault",
            username=hub.key,
            password="x",
            age=AGE,
            poll_segment=SEGMENT,
            max_retries=1,
        )
        feeds.add_source(source)
        proxy.delay, proxy.chunk = 0.02, 256  # a few kB per poll answer: about 0.4 s each
        args = {
            "db": str(path),
            "log": str(tmp_path / "child.log"),
            "host": proxy.host,
            "port": proxy.port,
            "key": hub.key,
            "age": AGE.total_seconds(),
            "segment": SEGMENT.total_seconds(),
            "now": NOW.isoformat(),
        }
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            # wait until a segment with data is committed: the next one is then being read
            deadline = time.monotonic() + 20
            while not feeds.count_observables("feed") and time.monotonic() < deadline:
                assert child.poll() is None, child.communicate()
                time.sleep(0.01)
            assert feeds.count_observables("feed"), "the child committed nothing in time"
            time.sleep(0.1)  # well inside the next segment's slow answer
            assert proxy.sending == 1, "the child should be reading a slow poll answer"
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        out, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, err.decode()
        assert b"finished" not in out, "the child finished before it was killed"

        # the crash as the next run sees it
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert feeds.status("feed").result == "running"  # it never got to say otherwise
        mark = feeds.watermark("feed")
        begin = NOW - AGE
        assert mark in {stop for _, stop in segments(begin, NOW, SEGMENT)}
        assert mark < NOW  # killed in the middle of the window, not after it
        kept = stored(feeds, "feed")
        assert len(kept) == len(set(kept))
        assert set(kept) == truth(source, hub.host, hub.port, begin, mark)[0]

        # restart: a poll in this process, at full speed
        proxy.clear()
        result = poll_source(
            feeds, source, log, now=lambda: LATER, client_factory=fast_client, sleep=lambda _: None
        )
    assert result.ok, result.error
    assert feeds.status("feed").result == "ok"
    restart = [e.message for e in feeds.log_entries("feed")]
    assert any("the previous poll did not finish" in m for m in restart)
    assert feeds.watermark("feed") == LATER
    everything: set[Pair]
    everything, blocks = truth(source, hub.host, hub.port, begin, LATER)
    assert blocks == sum(p.public for p in hub_pulses())  # every pulse it may see, once
    have = stored(feeds, "feed")
    assert len(have) == len(set(have)), "an observable is stored twice"
    assert set(have) == everything
    assert sum(feeds.count_observables("feed").values()) == len(everything)
    assert len(kept) + result.new == len(everything)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

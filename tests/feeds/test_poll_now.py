"""Poll Now takes the source's lease, as the scheduler does, so no two nodes poll a source at
once: ``feedgate poll`` (processes), ``POST /api/v1/sources/{name}/poll`` (the real API, the real
poller) and a ``feedgate poll`` killed mid-poll, against a real hub, on SQLite and on a real
PostgreSQL (``any_db``). The lease logic itself, with a recording poll: test_scheduler.py."""

from __future__ import annotations

import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO

import httpx
import pytest
import sqlalchemy as sa
from fault_proxy import FaultProxy
from test_cluster import make_sources
from test_faults import AGE, NOW, SEGMENT, Hub, fast_client, stored, truth

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.feeds import secrets
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import poll_source, segments
from feedgate.feeds.scheduler import DEFAULT_LEASE, FREE, LeaseHeld, Scheduler
from feedgate.feeds.schema import leases
from feedgate.feeds.store import FeedStore
from feedgate.web.api import OPENAPI, create_api
from pgserver import Database

# hub is a module-scoped fixture of test_faults; importing it makes it available here
from test_faults import hub  # noqa: F401  # isort: skip

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
TOKEN = "poll-now-token"
OTHER = "gw2:4242:cafebabe"  # another node, polling the source right now


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = secrets.generate_key()
    monkeypatch.setenv(secrets.KEY_ENV, value)
    return value


def node(url: str, name: str = OTHER) -> Scheduler:
    store = FeedStore(db.engine(url))
    return Scheduler(store, ThreatFeedLog(store, write_file=False), node=name)


def holders(store: FeedStore) -> dict[str, str]:
    with store.engine.connect() as conn:
        return {r.source: r.node for r in conn.execute(leases.select()) if r.node != FREE}


def lease_end(store: FeedStore) -> str:
    """When the one lease held ends, as refusals say it."""
    with store.engine.connect() as conn:
        expires = conn.execute(sa.select(leases.c.expires)).scalar_one()
    return f"{datetime.fromtimestamp(expires / 1e6, UTC):%H:%M:%S}Z"


def feedgate_env(url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``feedgate`` child on database ``url``."""
    data = str(tmp_path / "data")
    return {**os.environ, "FEEDGATE_DB": url, "XDG_DATA_HOME": data, "NO_PROXY": "127.0.0.1"}


def stalled_poll(
    store: FeedStore, proxy: FaultProxy, name: str, env: dict[str, str], lease: str = "120"
) -> subprocess.Popen[bytes]:
    """``feedgate poll NAME --lease LEASE`` whose first request never gets an answer, once it
    is polling (its status says running, the proxy holds its request)."""
    proxy.script("stall", 0)
    proc = subprocess.Popen(
        [FEEDGATE, "poll", name, "--lease", lease],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            "the Poll Now to be polling",
            lambda: store.status(name).result == "running" and bool(proxy.faults()),
        )
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_api_poll_now_is_409_while_another_node_polls_then_polls_and_releases(
    any_db: Database,
    hub: Hub,  # noqa: F811
    key: str,
) -> None:
    store = FeedStore(db.engine(any_db.url))
    (source,) = make_sources(hub, 1)
    store.add_source(source)
    feed_log = ThreatFeedLog(store, write_file=False)
    api = create_api(store, feed_log, TOKEN, poll=partial(poll_source, client_factory=fast_client))
    other = node(any_db.url)
    assert other.claim(source.name)
    with (
        serving(api) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60, trust_env=False
        ) as client,
    ):
        refused = client.post(f"/api/v1/sources/{source.name}/poll")
        assert refused.status_code == 409
        assert refused.json() == {
            "detail": f'source "{source.name}" is being polled by node {OTHER}'
            f" (its lease ends {lease_end(store)} unless it renews it while it polls);"
            " try again when it finishes",
            "node": OTHER,
            "since": None,
        }
        assert store.status(source.name).result is None  # nothing polled
        assert store.log_entries(source.name) == []
        assert holders(store) == {source.name: OTHER}

        other.release(source.name)
        polled = client.post(f"/api/v1/sources/{source.name}/poll")
        assert polled.status_code == 200, polled.text
        assert polled.json()["ok"] and polled.json()["read"] > 0
        assert holders(store) == {}  # released after the poll
        assert other.claim(source.name)  # a scheduler can take it again
        assert client.post("/api/v1/sources/nope/poll").status_code == 404
    responses = OPENAPI["paths"]["/api/v1/sources/{name}/poll"]["post"]["responses"]
    assert {"200", "401", "404", "409"} <= set(responses)


def test_cli_poll_now_exits_1_while_another_node_polls_then_polls_and_releases(
    any_db: Database,
    hub: Hub,  # noqa: F811
    key: str,
    tmp_path: Path,
) -> None:
    store = FeedStore(db.engine(any_db.url))
    (source,) = make_sources(hub, 1)
    store.add_source(source)
    env = feedgate_env(any_db.url, tmp_path)
    other = node(any_db.url)
    assert other.claim(source.name)
    store.set_status(source.name, last_start=datetime(2026, 11, 28, 9, 5, tzinfo=UTC))
    store.set_status(source.name, result="running")  # the other node's poll, since 09:05
    run = partial(subprocess.run, capture_output=True, text=True, timeout=120, env=env)
    refused = run([FEEDGATE, "poll", source.name])
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f'feedgate: error: source "{source.name}" is being polled by node {OTHER} since '
        f"09:05:00Z (its lease ends {lease_end(store)} unless it renews it while it polls);"
        " try again when it finishes"
    ]
    assert refused.stdout == ""
    assert store.log_entries(source.name) == []  # nothing polled
    assert holders(store) == {source.name: OTHER}

    other.release(source.name)
    store.set_status(source.name, result="ok")
    polled = run([FEEDGATE, "poll", source.name])
    assert polled.returncode == 0, polled.stderr
    assert "poll done" in polled.stdout
    assert holders(store) == {}
    assert other.claim(source.name)


def test_a_killed_poll_now_is_taken_over_when_its_lease_expires(
    any_db: Database,
    hub: Hub,  # noqa: F811
    key: str,
    tmp_path: Path,
) -> None:
    """``feedgate poll --lease 3`` stalls on its first request and is killed (-9): until its
    lease expires another Poll Now is refused, naming it; then the scheduler takes the source
    over at once (its status still says running), and the lease ends free."""
    store = FeedStore(db.engine(any_db.url))
    with FaultProxy(hub.host, hub.port) as proxy:
        (slow,) = make_sources(hub, 1, prefix="slow", port=proxy.port)
        store.add_source(slow)
        # renewed every second: a 2 s stall of that process on a loaded machine, not 0.7 s,
        # would let "now2" take the lease (and poll) instead of being refused
        proc = stalled_poll(store, proxy, slow.name, feedgate_env(any_db.url, tmp_path), "3")
        try:
            (holder,) = holders(store).values()
            assert holder.split(":")[-2] == str(proc.pid)
            with pytest.raises(LeaseHeld, match=f"being polled by node {holder} since"):
                node(any_db.url, "now2").poll_now(slow)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        with store.engine.connect() as conn:
            expires = conn.execute(sa.select(leases.c.expires)).scalar_one()
        proxy.clear()
        scheduler = Scheduler(
            store,
            ThreatFeedLog(store, write_file=False),
            poll=partial(poll_source, client_factory=fast_client),
        )
        wait_for(
            "the dead Poll Now's lease to expire",
            lambda: datetime.now(UTC) > datetime.fromtimestamp(expires / 1e6, UTC),
            timeout=10,
        )
        assert [s.name for s in scheduler.due()] == [slow.name]
        (result,) = scheduler.run_once()
    assert result.ok and result.read > 0
    lines = [e.message for e in store.log_entries(slow.name)]
    assert sum("the previous poll did not finish" in line for line in lines) == 1
    assert holders(store) == {}


def test_poll_now_right_after_a_killed_poll_now_polls_at_once(
    any_db: Database,
    hub: Hub,  # noqa: F811
    key: str,
    tmp_path: Path,
) -> None:
    """``kill -9`` of ``feedgate poll`` mid-poll, then ``feedgate poll`` at once: it polls (the
    dead process was on this host, its lease is not waited out), goes on from the watermark,
    and leaves the lease free; it used to fail for the two minutes of the lease."""
    store = FeedStore(db.engine(any_db.url))
    with FaultProxy(hub.host, hub.port) as proxy:
        (slow,) = make_sources(hub, 1, prefix="big", port=proxy.port)
        store.add_source(slow)
        env = feedgate_env(any_db.url, tmp_path)
        run = partial(subprocess.run, capture_output=True, text=True, timeout=120, env=env)
        proc = stalled_poll(store, proxy, slow.name, env)
        try:
            (holder,) = holders(store).values()
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        proxy.clear()
        again = run([FEEDGATE, "poll", slow.name])
    assert again.returncode == 0, again.stderr
    assert "the previous poll did not finish" in again.stdout
    assert "poll done" in again.stdout
    with store.engine.connect() as conn:
        expires = conn.execute(sa.select(leases.c.expires)).scalar_one_or_none()
    assert holders(store) == {}, (holder, expires)
    assert store.status(slow.name).result == "ok"


class Lines:
    """A child's stdout, line by line, as it arrives (a thread reads it)."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, what: str, check: Callable[[str], bool], timeout: float = 60) -> str:
        """The next line that passes ``check``, the lines before it kept in ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out waiting for {what}: {self.seen}") from None
            assert line is not None, f"the output ended before {what}: {self.seen}"
            self.seen.append(line)
            if check(line):
                return line

    def rest(self) -> list[str]:
        while (line := self._queue.get(timeout=60)) is not None:
            self.seen.append(line)
        return self.seen


def test_poll_now_prints_as_it_goes_and_ctrl_c_keeps_what_was_stored(
    any_db: Database,
    hub: Hub,  # noqa: F811
    key: str,
    tmp_path: Path,
) -> None:
    """``feedgate poll`` against a hub whose seventh request never gets an answer: the log lines
    of the segments before it are on stdout while the poll still runs (they all came at the
    end); then SIGINT (Ctrl-C): exit 130, an "interrupted" line, the status no longer
    ``running``, the lease free, and the segments committed before it kept, the watermark
    with them (they used to say only "Aborted!", and the source stayed ``running``)."""
    store = FeedStore(db.engine(any_db.url))
    with FaultProxy(hub.host, hub.port) as proxy:
        (source,) = make_sources(hub, 1, prefix="big", port=proxy.port)
        store.add_source(source)
        proxy.script("stall", 0, skip=6)
        proc = subprocess.Popen(
            [FEEDGATE, "poll", source.name],
            env=feedgate_env(any_db.url, tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lines = Lines(proc.stdout)  # type: ignore[arg-type]
            lines.until("poll started", lambda line: "poll started" in line)
            lines.until("a segment line", lambda line: "observables read" in line)
            wait_for("the stalled request", lambda: bool(proxy.faults()))
            assert proc.poll() is None  # the poll is still on: its request has no answer
            assert store.status(source.name).result == "running"
            os.kill(proc.pid, signal.SIGINT)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out = lines.rest()
        err = proc.stderr.read()  # type: ignore[union-attr]
    assert rc == 130, (out, err)
    assert "Aborted!" not in err and "Traceback" not in err, err
    assert "\x1b[" not in err  # stderr is no terminal: no status line
    (said,) = [line for line in out if "poll interrupted" in line]
    assert "Error:" in said and "the segment in progress was not kept" in said
    status = store.status(source.name)
    assert status.result == "error" and "interrupted" in (status.error or "")
    assert holders(store) == {}
    # what was committed is kept, and is exactly what the hub holds up to the watermark
    started = status.last_start
    assert started is not None
    begin = started - source.age
    mark = store.watermark(source.name)
    bounds = [stop for _, stop in segments(begin, started, source.poll_segment)]
    assert mark in bounds and mark < started, (mark, bounds)
    done = [line for line in out if ": segment " in line and "observables read" in line]
    assert len(done) == bounds.index(mark) + 1, out  # one line per committed segment
    have = stored(store, source.name)
    assert len(have) == len(set(have))
    assert set(have) == truth(source, hub.host, hub.port, begin, mark)[0]


def test_poll_now_shows_its_progress_when_stderr_is_a_terminal(
    hub: Hub,  # noqa: F811
    key: str,
    tmp_path: Path,
) -> None:
    """stderr on a pseudo-terminal: a status line redrawn in place (segment, blocks,
    observables, rate), taken away at the end; stdout keeps only the log lines."""
    url = str(tmp_path / "feeds.db")
    store = FeedStore(db.engine(url))
    (source,) = make_sources(hub, 1)
    store.add_source(source)
    env = feedgate_env(url, tmp_path)
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [FEEDGATE, "poll", source.name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            timeout=120,
        )
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert done.returncode == 0, shown
    assert "\x1b[" not in done.stdout and "poll done" in done.stdout
    text = shown.decode()
    read = store.status(source.name).read
    segment_count = len(list(segments(NOW - AGE, NOW, SEGMENT)))  # the window's length
    assert re.search(rf"{source.name}: segment \d+/{segment_count}, [\d,]+ blocks,", text), text
    assert f"{read:,} observables, " in text and "/s" in text
    assert text.endswith("\r\x1b[K"), text[-80:]  # taken away at the end


def test_poll_and_serve_share_one_lease_option_whose_default_is_the_schedulers() -> None:
    from feedgate.cli.serve import serve_command
    from feedgate.cli.sources import poll_command

    for command in (poll_command, serve_command):
        (option,) = [p for p in command.params if p.name == "lease"]
        assert option.default == DEFAULT_LEASE.total_seconds(), command.name
        assert option.envvar == "FEEDGATE_LEASE"

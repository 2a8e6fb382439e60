"""What the poller's retries do and say (issue 11, item 6g), against real sockets on 127.0.0.1:
``max_retries`` N means N + 1 attempts (no retries hidden below it, in the transport), a server
that answers HTTPS in plain HTTP is refused at once (retrying cannot help), and each retry line
says how long the failed attempt took and how long the backoff is, by the clock and sleep the
poller is given (the test's: no wall-clock assertions)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feedgate import db
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import BACKOFF_BASE, poll_source
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.taxii.client import TaxiiClient, TaxiiError

NOW = datetime(2026, 11, 20, tzinfo=UTC)
#: How long each attempt "takes": the server moves the test's clock on by this before it answers.
ATTEMPT = 3.0


@dataclass
class Clock:
    """The poller's monotonic clock and sleep: time passes only when the test says so."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


@dataclass
class Server:
    port: int
    accepted: list[int]


@contextmanager
def server(answer: Callable[[socket.socket], None]) -> Iterator[Server]:
    """A server on 127.0.0.1 that counts the connections it accepts and ``answer`` s each one
    (then closes it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            with conn:
                if stop.is_set():
                    return
                accepted.append(1)
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = int(listener.getsockname()[1])
    try:
        yield Server(port, accepted)
    finally:
        stop.set()
        socket.create_connection(("127.0.0.1", port)).close()  # wakes accept() to see it
        thread.join(timeout=10)
        listener.close()


@pytest.fixture
def feeds(tmp_path: Path) -> Iterator[tuple[FeedStore, ThreatFeedLog]]:
    store = FeedStore(db.engine(str(tmp_path / "feeds.db")))
    yield store, ThreatFeedLog(store, tmp_path / "threat-feed.log")


def _source(port: int, retries: int, *, https: bool = False) -> Source:
    # one segment: nothing is polled ahead, so each attempt is one connection
    return Source(
        name="feed",
        hostname="127.0.0.1",
        port=port,
        use_https=https,
        collection="c",
        age=timedelta(days=1),
        poll_segment=timedelta(days=1),
        max_retries=retries,
    )


def _plain_http(conn: socket.socket) -> None:
    conn.recv(65536)  # the ClientHello
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def _hang_up_after(clock: Clock) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        conn.recv(65536)
        clock.advance(ATTEMPT)  # before the client sees the close: the attempt took ATTEMPT

    return answer


@pytest.mark.parametrize("retries", [0, 2])
def test_max_retries_n_is_n_plus_one_attempts_and_the_retry_line_tells_the_wait(
    feeds: tuple[FeedStore, ThreatFeedLog], retries: int
) -> None:
    """A server that hangs up on every request (a transient fault: retried), polled with the
    poller's own client: before, the transport retried each attempt 3 times more, unlogged
    (``--retries 0`` took 3.5 s); now each attempt is one connection."""
    store, log = feeds
    clock = Clock()
    with server(_hang_up_after(clock)) as hub:
        source = _source(hub.port, retries)
        store.add_source(source)
        result = poll_source(store, source, log, now=lambda: NOW, sleep=clock.sleep, clock=clock)
    assert not result.ok and f"POST http://127.0.0.1:{hub.port}/" in (result.error or "")
    assert len(hub.accepted) == retries + 1
    backoffs = [BACKOFF_BASE * 2**attempt for attempt in range(retries)]
    assert clock.slept == backoffs
    lines = [e.message for e in store.log_entries("feed")]
    retry_lines = [line for line in lines if "; retry " in line]
    assert [line.split("nothing of it stored; ")[1] for line in retry_lines] == [
        f"the attempt took {ATTEMPT:.1f} s; retry {n + 1} of {retries} in {delay:.0f} s"
        for n, delay in enumerate(backoffs)
    ]
    # the summary's duration is the same clock's: every attempt and every backoff
    assert result.seconds == pytest.approx(ATTEMPT * (retries + 1) + sum(backoffs))


def test_https_to_a_plain_http_server_is_refused_at_once(
    feeds: tuple[FeedStore, ThreatFeedLog],
) -> None:
    """The server answers the TLS handshake in plain HTTP: "connect without HTTPS", once, not
    after 3 retries and their backoffs (28 s before)."""
    store, log = feeds
    clock = Clock()
    with server(_plain_http) as hub:
        source = _source(hub.port, 3, https=True)
        store.add_source(source)
        result = poll_source(store, source, log, now=lambda: NOW, sleep=clock.sleep, clock=clock)
    assert not result.ok and "connect without HTTPS" in (result.error or "")
    assert len(hub.accepted) == 1 and clock.slept == []
    lines = [e.message for e in store.log_entries("feed")]
    assert any("not retried: the server refuses the request" in line for line in lines), lines
    assert not any("; retry " in line for line in lines), lines


def test_the_transport_does_not_retry_a_tls_mismatch_either() -> None:
    """The TAXII client with its own retries (as ``taxii-poll`` uses it): one connection, and
    the error says it is permanent, so no caller retries it."""
    with server(_plain_http) as hub:
        client = TaxiiClient(host="127.0.0.1", port=hub.port, use_https=True, retries=3)
        with client, pytest.raises(TaxiiError, match="connect without HTTPS") as failed:
            client.discover_services(uri="/taxii/discovery")
    assert failed.value.permanent
    assert len(hub.accepted) == 1

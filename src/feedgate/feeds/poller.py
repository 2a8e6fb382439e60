"""Poll one source: the window from its watermark to now, in segments, each one transaction.

What an admin relies on (design.md, "Feed sources and polling"): the window runs from the
source's watermark (or now − age on a first poll) to now, in segments of ``poll_segment``. Each
segment's blocks are parsed as they stream in and upserted in one transaction, and only then
does the watermark move to the segment's end, in that same transaction. So a crash or a failure
re-polls at most the current segment, and upserts make that harmless: nothing lost, nothing
doubled. A failing segment is retried with backoff up to ``max_retries`` times (not when the server
refuses the request as such: the credentials, the collection; see ``TaxiiError.permanent``);
then the poll stops, the source shows the error, and the next interval tries again from the
watermark.

The next segments are polled and parsed ahead, on a thread of their own
(:mod:`feedgate.feeds._prefetch`), while one is stored: the parse workers never wait for a commit
or a network round trip. "Poll Now" and the scheduler run this same function. Every step is
written to the threat-feed log in the gateway style
(``segment …: 12 blocks, 480 observables read (2 repeats within a segment), 468 new,
10 updated; 1 skipped: 1 × invalid domain value``; see :func:`feedgate.feeds.log.read_figures`
and :func:`~feedgate.feeds.log.skipped_figures`).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from feedgate._malloc import limit_arenas
from feedgate.stix import ReadStats, StixReadError
from feedgate.taxii.client import TaxiiClient, TaxiiError
from feedgate.xml import XMLParseError

from ._prefetch import Prefetcher
from .interrupts import interruptible, interruptible_items
from .log import ThreatFeedLog, read_figures, skipped_figures
from .secrets import key_origin
from .sources import Source, client_options, endpoint, unreadable_secrets_problem
from .store import FeedStore

#: Processes that parse poll parts: the rest of ingest (network, store) stays in the poller's
#: process, so two cores are kept busy.
PARSE_WORKERS: Final = min(2, os.cpu_count() or 1)
#: Backoff between retries of a segment: BASE × 2**attempt, at most MAX.
BACKOFF_BASE: Final = 2.0
BACKOFF_MAX: Final = 60.0


@dataclass
class PollResult:
    """What one poll did, for the CLI, the API and the scheduler."""

    source: str
    ok: bool = True
    segments: int = 0
    blocks: int = 0
    read: int = 0
    new: int = 0
    updated: int = 0
    expired: int = 0
    skipped_blocks: int = 0
    #: Values the reader left out, by reason (``ReadStats.skipped``): said in the log lines.
    skipped: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    """Times in log lines: minutes precision, UTC (``2026-11-01T00:00Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def segments(
    begin: datetime, end: datetime, size: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """(begin, end] windows of at most ``size`` covering (begin, end]."""
    start = begin
    while start < end:
        stop = min(start + size, end)
        yield start, stop
        start = stop


def default_client(source: Source) -> TaxiiClient:
    """The poller's client for ``source``. The poller retries a failed segment itself, with a
    log line per retry and ``max_retries`` as the bound, so the transport retries nothing
    (``retries=0``): otherwise every attempt hid up to three more, unlogged, with their own
    backoff, and ``--retries 0`` still took four connections and 3.5 s to fail."""
    return TaxiiClient(**client_options(source), timeout=source.timeout.total_seconds(), retries=0)


@dataclass(frozen=True)
class PollProgress:
    """Where a poll is, for a display (``feedgate poll`` on a terminal): segment ``segment`` of
    ``segments`` (1-based), and what was read so far, in ``seconds``."""

    source: str
    segment: int
    segments: int
    blocks: int
    read: int
    seconds: float

    @property
    def rate(self) -> float:
        """Observables read a second, so far."""
        return self.read / self.seconds if self.seconds > 0 else 0.0


class _Log:
    """The threat-feed log as the poll writes it: each line, then ``written()`` (so Poll Now
    shows every line as it happens, not all of them when the poll ends)."""

    def __init__(self, log: ThreatFeedLog, written: Callable[[], None]) -> None:
        self._log, self._written = log, written

    def info(self, source: str, message: str) -> None:
        self._log.info(source, message)
        self._written()

    def warning(self, source: str, message: str) -> None:
        self._log.warning(source, message)
        self._written()

    def error(self, source: str, message: str) -> None:
        self._log.error(source, message)
        self._written()


@dataclass(frozen=True)
class _Waits:
    """How the poller waits (a backoff) and tells time (how long an attempt took)."""

    sleep: Callable[[float], None]
    clock: Callable[[], float]


class _SegmentFailed(Exception):
    """A segment could not be polled; the message is the cause, in one line."""


def poll_source(
    store: FeedStore,
    source: Source,
    feed_log: ThreatFeedLog,
    *,
    now: Callable[[], datetime] = utcnow,
    client_factory: Callable[[Source], TaxiiClient] = default_client,
    sleep: Callable[[float], None] = time.sleep,
    cancelled: Callable[[], str | None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
    written: Callable[[], None] = lambda: None,
    progress: Callable[[PollProgress], None] | None = None,
) -> PollResult:
    """Poll ``source`` now; see the module docstring. Never raises for feed problems: they are
    in the result, the source's status and the log.

    ``cancelled`` is asked before each segment: a reason (such as "this node lost the source's
    lease") stops the poll there, as an error, with every segment before it kept. ``clock``
    (seconds, monotonic) times the poll and each failed attempt, and ``sleep`` waits out a
    backoff: tests pass their own, so what the log says about waits is checked, not timed.
    ``written`` is called after each log line, ``progress`` after each batch stored.

    Ctrl-C (``KeyboardInterrupt``) stops the poll where it is: the segment in progress is rolled
    back (what was committed stays, the watermark with it), the log says "poll interrupted",
    the status is no longer ``running``, and the ``KeyboardInterrupt`` is raised again for the
    caller (the lease's holder releases it; ``feedgate poll`` exits 130).
    """
    log = _Log(feed_log, written)
    limit_arenas()  # see feedgate._malloc: a poll's threads would each keep their peak
    name = source.name
    result = PollResult(name)
    interrupted = False
    shown: _Shown | None = None
    started = clock()
    begun = now()
    previous = store.status(name)
    if previous.result == "running":
        # Nobody else polls it (the scheduler's lease), so that poll's process died mid-way;
        # its last segment was rolled back, and this poll starts from its watermark.
        log.warning(
            name,
            "the previous poll did not finish (its process stopped); going on from its"
            " watermark, nothing of the unfinished segment was kept",
        )
    store.set_status(name, last_start=begun, result="running", error=None)
    watermark = store.watermark(name)
    begin = watermark or begun - source.age
    end = begun
    log.info(
        name,
        f"poll started: collection {source.collection} at {endpoint(source)},"
        f" window {stamp(begin)}–{stamp(end)}",
    )
    try:
        if source.unreadable_secrets:  # this source's poll fails, saying what to do; not others
            raise ValueError(unreadable_secrets_problem(source, key_origin()))
        with client_factory(source) as client:
            windows = list(segments(begin, end, source.poll_segment))
            shown = _Shown(progress, name, len(windows), result, clock, started)
            _poll_segments(
                store,
                source,
                log,
                client,
                windows,
                result,
                _Waits(sleep, clock),
                cancelled,
                shown,
                now,
            )
    except _SegmentFailed as exc:
        result.ok = False
        result.error = str(exc)
    except (TaxiiError, ValueError, OSError) as exc:  # the client could not even be set up
        result.ok = False
        result.error = " ".join(str(exc).split()) or type(exc).__name__
        log.error(name, f"poll failed: {result.error}")
    except KeyboardInterrupt:
        interrupted = True
        result.ok = False
        mark = store.watermark(name)
        # Ctrl-C may come after a segment's commit, before its bookkeeping: the watermark
        # (read once the interrupted statement has settled) says whether it is stored.
        storing = shown.storing if shown is not None else None
        if storing is not None and mark is not None and mark >= storing.end:
            _stored(name, storing, result, log)
        kept = f"everything up to {stamp(mark)} is stored" if mark else "nothing was stored"
        result.error = (
            f"interrupted (Ctrl-C); {kept}, the segment in progress was not kept;"
            " the next poll goes on from there"
        )
    if not interrupted:
        finished = now()
        result.expired = store.expire(name, finished)
        # The history of what the source holds (feeds.held), here where every poll ends.
        store.record_held(name, finished)
    result.seconds = clock() - started
    summary = (
        f"{result.segments} segment(s), {result.blocks} blocks,"
        f" {read_figures(result.read, result.new, result.updated)}, {result.expired} expired"
        f" in {result.seconds:.1f} s{skipped_figures(result.skipped)}"
    )
    if result.ok:
        log.info(name, f"poll done: {summary}")
    elif interrupted:
        log.error(name, f"poll interrupted after {summary}: {result.error}")
    else:
        log.error(name, f"poll stopped after {summary}: {result.error}")
    store.set_status(
        name,
        last_end=now(),
        result="ok" if result.ok else "error",
        error=result.error,
        blocks=result.blocks,
        read=result.read,
        new=result.new,
        updated=result.updated,
        expired=result.expired,
    )
    if interrupted:
        raise KeyboardInterrupt
    return result


@dataclass
class _Shown:
    """Tells ``progress`` (if any) where the poll is: the totals before this segment plus what
    this segment has read so far."""

    progress: Callable[[PollProgress], None] | None
    source: str
    segments: int
    result: PollResult
    clock: Callable[[], float]
    started: float

    #: The segment being stored, until it is counted (a Ctrl-C may come between the two).
    storing: _Counts | None = None

    def __call__(self, index: int, blocks: int, read: int) -> None:
        if self.progress is not None:
            done = self.result
            self.progress(
                PollProgress(
                    self.source,
                    index + 1,
                    self.segments,
                    done.blocks + blocks,
                    done.read + read,
                    self.clock() - self.started,
                )
            )


def _poll_segments(
    store: FeedStore,
    source: Source,
    log: _Log,
    client: TaxiiClient,
    windows: list[tuple[datetime, datetime]],
    result: PollResult,
    waits: _Waits,
    cancelled: Callable[[], str | None],
    shown: _Shown,
    now: Callable[[], datetime],
) -> None:
    """Store each window in turn, the next ones polled and parsed ahead (see _prefetch)."""
    prefetch: Prefetcher | None = None
    try:
        for index, (begin, end) in enumerate(windows):
            window = f"segment {stamp(begin)}–{stamp(end)}"
            reason = cancelled()
            if reason:
                log.error(source.name, f"{window}: not polled: {reason}")
                raise _SegmentFailed(f"stopped: {reason}")
            for attempt in range(source.max_retries + 1):
                tried = waits.clock()
                if prefetch is None:
                    prefetch = Prefetcher(
                        client,
                        source.collection,
                        source.poll_path,
                        windows,
                        index,
                        workers=PARSE_WORKERS,
                    )
                counts = _Counts(window, end)
                shown.storing = counts  # for a Ctrl-C: see _count_interrupted
                try:
                    _segment(store, source.name, prefetch, index, end, now, shown, counts)
                except (TaxiiError, XMLParseError, StixReadError, OSError) as exc:
                    prefetch.close()
                    prefetch = None  # a fresh one polls this segment again
                    cause = " ".join(str(exc).split()) or type(exc).__name__
                    refused = isinstance(exc, TaxiiError) and exc.permanent
                    if attempt < source.max_retries and not refused:
                        delay = min(BACKOFF_BASE * 2**attempt, BACKOFF_MAX)
                        # The attempt's own time too: a timeout or a slow refusal is most of
                        # the gap between two retry lines, and the backoff alone hid it.
                        took = waits.clock() - tried
                        log.warning(
                            source.name,
                            f"{window}: {cause}; nothing of it stored; the attempt took"
                            f" {took:.1f} s; retry {attempt + 1} of {source.max_retries}"
                            f" in {delay:.0f} s",
                        )
                        with interruptible():
                            waits.sleep(delay)
                        reason = cancelled()
                        if reason:
                            log.error(source.name, f"{window}: not retried: {reason}")
                            raise _SegmentFailed(f"stopped: {reason}") from None
                        continue
                    # A refusal (credentials, collection, the request) would only come back
                    # after each backoff: the admin hears of it at once.
                    why = "; not retried: the server refuses the request" if refused else ""
                    if refused:  # an HTTP 404: say which poll paths discovery there lists
                        hint = client.poll_not_found_hint(
                            exc, source.poll_path, check="--poll-path"
                        )
                        cause = hint or cause
                    log.error(source.name, f"{window}: {cause}{why}; giving up until the next poll")
                    raise _SegmentFailed(cause) from None
                shown.storing = None
                _stored(source.name, counts, result, log)
                break
    finally:
        if prefetch is not None:
            prefetch.close()


@dataclass
class _Counts:
    """What one segment read and stored (filled in before its commit, so a Ctrl-C right after
    the commit still finds them)."""

    window: str
    end: datetime
    blocks: int = 0
    read: int = 0
    new: int = 0
    updated: int = 0
    skipped: int = 0  # unreadable text content blocks
    #: Values left out, by reason (the reader's stats of every part).
    left_out: Counter[str] = field(default_factory=Counter)


def _stored(name: str, counts: _Counts, result: PollResult, log: _Log) -> None:
    """A committed segment: its counts into the result, its line into the log."""
    result.segments += 1
    result.blocks += counts.blocks
    result.read += counts.read
    result.new += counts.new
    result.updated += counts.updated
    result.skipped_blocks += counts.skipped
    for reason, n in counts.left_out.items():
        result.skipped[reason] = result.skipped.get(reason, 0) + n
    log.info(
        name,
        f"{counts.window}: {counts.blocks} blocks,"
        f" {read_figures(counts.read, counts.new, counts.updated)}"
        f"{skipped_figures(counts.left_out)}",
    )


def _segment(
    store: FeedStore,
    name: str,
    prefetch: Prefetcher,
    index: int,
    end: datetime,
    now: Callable[[], datetime],
    shown: _Shown,
    counts: _Counts,
) -> None:
    """One segment in one transaction; what it read and stored goes to ``counts``.

    Observables are stamped seen at ``now()`` as they are stored (the ingest clock: when
    feedgate saw them, not the segment's end, which may be weeks ago), so each lives ``age``
    after its last poll brought it."""
    blocks = read = new = updated = skipped = 0
    left_out: Counter[str] = Counter()
    with store.segment(name) as segment:
        # Ctrl-C stops the waits for the server's answer, never a write (see .interrupts)
        for part in interruptible_items(prefetch.segment(index)):
            stats = ReadStats()
            try:
                for batch in interruptible_items(part.batches(stats)):
                    n, u = segment.upsert(batch, now())
                    new, updated = new + n, updated + u
                    shown(index, blocks + stats.content_blocks, read + stats.observables)
            except (StixReadError, XMLParseError) as exc:
                raise TaxiiError(
                    "the server sent a poll answer that cannot be read: "
                    f"{' '.join(str(exc).split())}"
                ) from None
            blocks += stats.content_blocks
            read += stats.observables
            skipped += stats.skipped.get("unreadable text content block", 0)
            left_out.update(stats.skipped)
        segment.finish(end)
        counts.blocks, counts.read, counts.new = blocks, read, new
        counts.updated, counts.skipped, counts.left_out = updated, skipped, left_out

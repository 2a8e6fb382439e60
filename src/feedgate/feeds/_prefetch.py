"""Poll the segments after the one being stored, and start parsing them, on a thread of their own.

Storing a segment ends with a write transaction; polling the next one starts with a network
round trip. Done one after the other, the parse workers would sit idle through both, on every
segment. So a producer thread polls segment after segment and hands each part to the parse
workers as it arrives (:class:`feedgate.stix.PartJob`); the poller's thread takes the parts
segment by segment, reads the observables back, stores them and commits. Nothing about a
segment's transaction changes: the producer only reads from the network, and the queue is
bounded, so it runs at most a few parts ahead and memory stays flat.

The producer does no Python-heavy work (no decoding of results): on the poller's thread the
SQLite driver lets go of the GIL for every row it writes, and a busy second thread would make it
wait for the GIL again each time.

A segment whose poll fails ends the producer; the poller retries that segment with a new one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from feedgate.observables import ObservableBatch
from feedgate.stix import PartJob, ReadStats, batched, read_observables, start_workers
from feedgate.taxii.client import TaxiiClient
from feedgate.xml import DEFAULT_MAX_BYTES

#: Poll parts in memory at once: the one being stored and the next one, being parsed
#: meanwhile. A part can be tens of MB (a server's page of 1,000 pulses); more would cost memory
#: and gain nothing measurable.
PARTS: Final = 2
_POLL_INTERVAL: Final = 0.1  # how often a blocked producer looks whether it should stop


@dataclass(frozen=True, slots=True)
class Part:
    """One poll part of a segment: being parsed by the workers, or to be read in-process."""

    job: PartJob | None
    data: bytes

    def batches(self, stats: ReadStats) -> Iterator[ObservableBatch]:
        """The part's observables in batches, in order; counts go to ``stats``."""
        if self.job is not None:
            return self.job.batches(stats)
        return batched(read_observables(self.data, stats=stats))


@dataclass(frozen=True, slots=True)
class SegmentDone:
    """Every part of a segment was read."""


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_Item = tuple[int, "Part | SegmentDone | _Failed"]


class Prefetcher:
    """Reads ``windows[first:]`` of ``collection`` ahead of the caller; see the module doc."""

    def __init__(
        self,
        client: TaxiiClient,
        collection: str,
        poll_path: str,
        windows: Sequence[tuple[datetime, datetime]],
        first: int,
        *,
        workers: int = 1,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._client = client
        self._collection = collection
        self._poll_path = poll_path
        self._windows = windows
        self._workers = workers
        self._max_bytes = max_bytes
        if workers > 1:
            start_workers(workers)
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=PARTS)
        self._parts = threading.BoundedSemaphore(PARTS)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(first,), name="feedgate-prefetch", daemon=True
        )
        self._thread.start()

    # --- the producer thread ----------------------------------------------------------------

    def _put(self, item: _Item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_INTERVAL)
                return True
            except queue.Full:
                continue
        return False

    def _permit(self) -> bool:
        """Wait until fewer than PARTS parts are in memory (False: stop)."""
        while not self._stop.is_set():
            if self._parts.acquire(timeout=_POLL_INTERVAL):
                return True
        return False

    def _run(self, first: int) -> None:
        for index in range(first, len(self._windows)):
            begin, end = self._windows[index]
            try:
                answers = self._client.poll_raw(self._collection, begin, end, uri=self._poll_path)
                while True:
                    if not self._permit():
                        return
                    data = next(answers, None)  # the next part is requested here
                    if data is None:
                        self._parts.release()
                        break
                    job = None
                    if self._workers > 1:
                        job = PartJob(data, self._workers, self._max_bytes)
                    if not self._put((index, Part(job, data))):
                        if job is not None:
                            job.cancel()
                        return
                if not self._put((index, SegmentDone())):
                    return
            except BaseException as exc:  # handed to the poller's thread, which decides
                self._put((index, _Failed(exc)))
                return

    # --- the poller's side ------------------------------------------------------------------

    def segment(self, index: int) -> Iterator[Part]:
        """The parts of segment ``index``, in order; raises what its poll raised. A part
        counts as in memory until the next one is asked for."""
        holding = False
        try:
            while True:
                got, item = self._queue.get()
                if holding:
                    self._parts.release()
                    holding = False
                if got != index:  # pragma: no cover - the poller asks in order
                    raise RuntimeError(f"prefetch out of order: segment {got}, expected {index}")
                if isinstance(item, SegmentDone):
                    return
                if isinstance(item, _Failed):
                    raise item.error
                holding = True
                yield item
        finally:
            if holding:
                self._parts.release()

    def close(self) -> None:
        """Stop the producer (it finishes the request in hand, bounded by the client's
        timeouts, without waiting for it here)."""
        self._stop.set()
        while True:
            try:
                _, item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Part) and item.job is not None:
                item.job.cancel()

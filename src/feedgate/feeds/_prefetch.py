"""Poll and parse the segments after the one being stored, on a thread of their own.

Storing a segment ends with a write transaction; polling the next one starts with a network
round trip. Done one after the other, the parse workers would sit idle through both, on every
segment. So a producer thread polls segment after segment, hands each part to the STIX reader
(whose worker processes do the parsing) and queues the observables; the poller's thread takes
them segment by segment, stores them and commits. Nothing about a segment's transaction
changes: the producer only reads from the network, and the queue is bounded, so it runs at
most a few batches ahead and memory stays flat.

A segment whose poll fails ends the producer; the poller retries that segment with a new one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from feedgate.observables import Observable
from feedgate.stix import ReadStats, StixReadError, read_observables, start_workers
from feedgate.taxii.client import TaxiiClient, TaxiiError
from feedgate.xml import XMLParseError

#: Observables per queued batch (and per upsert call).
BATCH: Final = 5000
#: Batches the producer may run ahead of the store.
DEPTH: Final = 8
_POLL_INTERVAL: Final = 0.1  # how often a blocked producer looks whether it should stop


@dataclass(frozen=True, slots=True)
class PartDone:
    """One poll part of a segment was read whole."""

    stats: ReadStats


@dataclass(frozen=True, slots=True)
class SegmentDone:
    """Every part of a segment was read."""


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_Item = tuple[int, "list[Observable] | PartDone | SegmentDone | _Failed"]


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
    ) -> None:
        self._client = client
        self._collection = collection
        self._poll_path = poll_path
        self._windows = windows
        self._workers = workers
        if workers > 1:
            start_workers(workers)
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=DEPTH)
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

    def _run(self, first: int) -> None:
        for index in range(first, len(self._windows)):
            begin, end = self._windows[index]
            try:
                for part in self._client.poll_raw(
                    self._collection, begin, end, uri=self._poll_path
                ):
                    if not self._read_part(index, part):
                        return
                if not self._put((index, SegmentDone())):
                    return
            except BaseException as exc:  # handed to the poller's thread, which decides
                self._put((index, _Failed(exc)))
                return

    def _read_part(self, index: int, part: bytes) -> bool:
        stats = ReadStats()
        batch: list[Observable] = []
        try:
            for obs in read_observables(part, stats=stats, workers=self._workers):
                batch.append(obs)
                if len(batch) >= BATCH:
                    if not self._put((index, batch)):
                        return False
                    batch = []
        except (StixReadError, XMLParseError) as exc:
            raise TaxiiError(
                f"the server sent a poll answer that cannot be read: {' '.join(str(exc).split())}"
            ) from None
        if batch and not self._put((index, batch)):
            return False
        return self._put((index, PartDone(stats)))

    # --- the poller's side ------------------------------------------------------------------

    def segment(self, index: int) -> Iterator[list[Observable] | PartDone]:
        """Batches and part ends of segment ``index``, in order; raises what its poll raised."""
        while True:
            got, item = self._queue.get()
            if got != index:  # pragma: no cover - the poller asks in order
                raise RuntimeError(f"prefetch out of order: segment {got}, expected {index}")
            if isinstance(item, SegmentDone):
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the producer (it finishes the request in hand, bounded by the client's
        timeouts, without waiting for it here)."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

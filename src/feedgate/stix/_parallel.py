"""Read a large STIX 1.x file on several cores.

A poll response is a long run of independent units (TAXII Content_Blocks, or whole STIX_Package
documents when the input is what ``taxii-poll`` prints). The parent maps the file, finds cut
points after the end tag of a unit every CHUNK_BYTES or so, and worker processes read the byte
ranges between cuts with the ordinary reader (:func:`._stix1.read_stix1`). Results come back in
input order, with at most a few ranges in flight, so memory stays flat.

A range of Content_Blocks is not a document on its own: the namespace prefixes it uses are
declared on the Poll_Response root. The worker wraps each range in an element that repeats the
root's ``xmlns`` declarations, which makes it well-formed without rewriting a byte of content.

The parallel read must say exactly what the sequential one says. If anything is unusual (a
range that does not parse, as when a cut fell inside a CDATA section or comment that holds an
end tag; bytes after the last block other than the root's end tag; a non-UTF-8 encoding), the
file is read again in one process, skipping what was already handed out, so the caller sees
the sequential result, errors included.
"""

from __future__ import annotations

import io
import itertools
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import IO, Any, Final, NamedTuple

import orjson

from feedgate import xml
from feedgate.observables import (
    EncodedContexts,
    Kind,
    LayeredContext,
    Observable,
    ObservableBatch,
    context_json,
    observable_digest,
)

from ._stats import ReadStats
from ._stix1 import read_stix1

log = logging.getLogger("feedgate.stix")

#: Target range size; big enough to amortise a round trip, small enough to balance the cores.
CHUNK_BYTES = 2 * 1024**2
_NAME: Final = rb"(?:[A-Za-z_][\w.-]*:)?"
#: Markers the cut finder must see: unit end tags, and what may hide them.
_ROOT_END: Final = re.compile(rb"\s*</" + _NAME + rb"(?:Poll_Response|Inbox_Message)\s*>\s*\Z")
_START_TAG_RE: Final = re.compile(
    rb"<([A-Za-z_][\w.:-]*)((?:\s+[^\s=>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*>"
)
_XMLNS_RE: Final = re.compile(rb"\sxmlns(?::[\w.-]+)?\s*=\s*(?:\"[^\"]*\"|'[^']*')")
_ENCODING_RE: Final = re.compile(rb"<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


class Plan(NamedTuple):
    """How to split a file: the kind of unit, where the body starts, the root's namespaces."""

    mode: str
    body_at: int
    xmlns: bytes


def plan(head: bytes) -> Plan | None:
    """How to split a file that starts with ``head``, or None to read it in one process.

    Only plain UTF-8 Poll_Responses, Inbox_Messages and runs of STIX_Packages are split; a
    single package, a CybOX document or another encoding is read in one process.
    """
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return None
    encoding = _ENCODING_RE.match(head)
    if encoding and encoding.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        return None
    start = xml._root_start(head)
    if start < 0 or start >= len(head):
        return None
    m = _START_TAG_RE.match(head, start)
    if m is None:
        return None
    name = m.group(1).rpartition(b":")[2]
    if name in (b"Poll_Response", b"Inbox_Message"):
        return Plan("blocks", m.end(), b"".join(_XMLNS_RE.findall(m.group(2))))
    if name == b"STIX_Package":
        return Plan("packages", 0, b"")
    return None


#: A range's observables as sent back by a worker: seven columns as one orjson document (kinds,
#: values, original types, context numbers; per context its own keys' JSON and the number of
#: its shared layer, or -1; the shared layers' JSON), far cheaper to send and to receive than
#: one object per observable, and decoded by the caller's own thread: the pool's result thread
#: then only moves bytes, and does not compete for the caller's GIL. Observables of one
#: indicator share one context, and indicators of one package one shared layer
#: (:class:`LayeredContext`): each is sent once. Text orjson refuses goes as a pickled tuple.
_Columns = tuple[
    list[str], list[str], list["str | None"], list[int], list[str], list[int], list[str]
]
#: With, beside them, each observable's digest (:func:`observable_digest`), 32 bytes each: the
#: storing process's busiest thread then need not hash every observable itself.
_Packed = tuple[bytes | _Columns, bytes]
_KINDS: Final = {str(kind): kind for kind in Kind}
_KIND_NAMES: Final = {kind: kind.value for kind in Kind}


def _pack(found: Iterable[Observable]) -> _Packed:
    rows = found if isinstance(found, list) else list(found)
    # Columns by comprehension: once per observable, so the cheapest loop Python has.
    names = _KIND_NAMES
    kinds = [names[obs[0]] for obs in rows]
    values = [obs[1] for obs in rows]
    types = [obs[2] for obs in rows]
    keys = b"".join(
        [observable_digest(kind, value) for kind, value in zip(kinds, values, strict=True)]
    )
    numbers: list[int] = []
    own: list[str] = []
    layer_of: list[int] = []
    shared: list[str] = []
    index: dict[int, int] = {}
    shared_index: dict[int, int] = {}
    for obs in rows:  # the rows keep every context alive: their ids stay unique
        context = obs[3]
        number = index.get(id(context))
        if number is None:
            number = index[id(context)] = len(own)
            if type(context) is LayeredContext:
                layer = context.shared
                layer_number = shared_index.get(id(layer))
                if layer_number is None:
                    layer_number = shared_index[id(layer)] = len(shared)
                    shared.append(context_json(layer))
                layer_of.append(layer_number)
                own.append(context_json(context.own))
            else:
                layer_of.append(-1)
                own.append(context_json(context))
        numbers.append(number)
    columns = (kinds, values, types, numbers, own, layer_of, shared)
    try:
        return orjson.dumps(columns), keys
    except (TypeError, ValueError):
        return columns, keys


def _unpack(packed: _Packed) -> ObservableBatch:
    payload, keys = packed
    kinds, values, types, numbers, own, layer_of, shared = (
        orjson.loads(payload) if isinstance(payload, bytes) else payload
    )
    kind_of = _KINDS
    digests = [keys[i : i + 32] for i in range(0, len(keys), 32)]
    return ObservableBatch.of_encoded(
        [kind_of[kind] for kind in kinds],
        values,
        types,
        numbers,
        EncodedContexts(own, layer_of, shared),
        digests,
    )


def _read_range(path: str, split: Plan, start: int, end: int) -> tuple[_Packed, ReadStats]:
    """Worker: read bytes [start, end) of the file with the ordinary reader."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return _read_bytes(data, split)


def _read_bytes(data: bytes, split: Plan) -> tuple[_Packed, ReadStats]:
    """Worker: read one range, already cut, with the ordinary reader."""
    stats = ReadStats()
    if split.mode == "blocks":
        # Content_Blocks cut from a Poll_Response: one element around them makes a document.
        data = b"<feedgate-chunk" + split.xmlns + b">" + data + b"</feedgate-chunk>"
        found = read_stix1(io.BytesIO(data), stats, concatenated=False, whole=True)
    else:
        found = read_stix1(io.BytesIO(data), stats)
    return _pack(found), stats


def _read_whole(data: bytes, max_bytes: int) -> tuple[_Packed, ReadStats]:
    """Worker: read a whole poll part (any format the reader knows)."""
    from feedgate.stix import read_observables

    stats = ReadStats()
    return _pack(read_observables(io.BytesIO(data), stats=stats, max_bytes=max_bytes)), stats


class _Unsafe(Exception):
    """The file cannot be split safely; read it in one process."""


def ranges(f: IO[bytes], split: Plan, chunk: int | None = None) -> Iterator[tuple[int, int]]:
    """Byte ranges of about ``chunk`` (default CHUNK_BYTES) that start and end on unit
    boundaries.

    Raises :class:`_Unsafe` when the bytes after the last unit are not just the root's end tag
    (a truncated download, a second document).
    """
    chunk = CHUNK_BYTES if chunk is None else chunk
    start = split.body_at if split.mode == "blocks" else 0
    last_end = -1
    for last_end in _unit_ends(f, split.mode, start):
        if last_end - start >= chunk:
            yield start, last_end
            start = last_end
    size = f.seek(0, io.SEEK_END)
    if split.mode == "blocks":
        if last_end < 0 or size - last_end > 4096:
            raise _Unsafe
        f.seek(last_end)
        if not _ROOT_END.match(f.read()):
            raise _Unsafe
        if start < last_end:
            yield start, last_end
    elif start < size:
        yield start, size


_UNIT_NAMES: Final = {"blocks": b"Content_Block", "packages": b"STIX_Package"}
_END_TAG: Final = re.compile(rb"</" + _NAME + rb"(?:Content_Block|STIX_Package)\s*>")
#: Bytes scanned at a time, and the context kept from one block to the next (a token found
#: in the last _CONTEXT bytes of a block is reported with the next one, whole).
_BLOCK = 4 * 1024**2
_CONTEXT: Final = 256


def _unit_ends(f: IO[bytes], mode: str, start: int) -> Iterator[int]:
    """Offsets just after each unit end tag.

    The file is read a block at a time (memory stays flat, unlike a map of the whole file) and
    searched with bytes.find, many times faster than a regular expression over every byte.
    An end tag inside a CDATA section or comment is taken for a real one; that cut leaves the
    range before it unparseable, and the reader then falls back to one process.
    """
    name = _UNIT_NAMES[mode]
    f.seek(start)
    data = b""
    base = start  # file offset of data[0]
    report_from = 0  # end tags starting before this were reported with the previous block
    while True:
        block = f.read(_BLOCK)
        data += block
        eof = not block
        limit = len(data) if eof else len(data) - _CONTEXT
        hit = data.find(name, report_from)
        while 0 <= hit < limit:
            tag_at = data.rfind(b"</", max(0, hit - 64), hit)
            if tag_at >= report_from:
                m = _END_TAG.match(data, tag_at)
                if m is not None and m.end() > hit:
                    yield base + m.end()
            hit = data.find(name, hit + len(name))
        if eof:
            return
        keep = limit - _CONTEXT
        data, base, report_from = data[keep:], base + keep, limit - keep


def read_parallel(
    path: str, split: Plan, stats: ReadStats, workers: int, max_bytes: int
) -> Iterator[Observable]:
    """Observables of the file at ``path`` read by ``workers`` processes, in input order."""
    yielded = 0
    try:
        for obs in _read_split(path, split, stats, workers, max_bytes):
            yield obs
            yielded += 1
        return
    except Exception:
        pass
    fresh = ReadStats()
    with open(path, "rb") as f:
        yield from _read_again(read_stix1(f, fresh, max_bytes=max_bytes), yielded, fresh, stats)


def _read_again(
    found: Iterator[Observable], handed_out: int, fresh: ReadStats, stats: ReadStats
) -> Iterator[Observable]:
    """The rest of a one-process read (``found``, counting into ``fresh``) after the
    ``handed_out`` observables the workers already gave: so the caller sees exactly what the
    sequential reader says, errors included. Its counts replace those in ``stats``."""
    try:
        yield from itertools.islice(found, handed_out, None)
    finally:
        stats.clear()
        stats.merge(fresh)


def _read_split(
    path: str, split: Plan, stats: ReadStats, workers: int, max_bytes: int
) -> Iterator[Observable]:
    context = multiprocessing.get_context("fork")
    pending: deque[Future[tuple[_Packed, ReadStats]]] = deque()
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        if size > max_bytes:
            raise xml.XMLLimitError(f"refused: the input exceeds the {max_bytes}-byte limit")
        if size == 0:
            return
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, **_orphan_guard()
        ) as pool:
            try:
                for start, end in ranges(f, split):
                    pending.append(pool.submit(_read_range, path, split, start, end))
                    if len(pending) > workers * 2:
                        yield from _collect(pending.popleft(), stats)
                while pending:
                    yield from _collect(pending.popleft(), stats)
            finally:
                for future in pending:
                    future.cancel()


def _collect(future: Future[tuple[_Packed, ReadStats]], stats: ReadStats) -> Iterator[Observable]:
    yield from _collect_batch(future, stats).observables()


def _collect_batch(future: Future[tuple[_Packed, ReadStats]], stats: ReadStats) -> ObservableBatch:
    packed, range_stats = future.result()  # a reader error in the worker is raised here
    stats.merge(range_stats)
    return _unpack(packed)


# --- workers never outlive their user --------------------------------------------------------

#: How often a worker looks whether the process it works for is still there, in seconds.
_WATCH_INTERVAL = 0.5


def _process_start(pid: int) -> str | None:
    """When ``pid`` started (Linux), to tell it from a later process given the same pid; None
    when it is gone, a zombie included (its parent has not reaped it yet, as a service's
    supervisor blocked on our pipes would not: its workers must not wait for that)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):  # field 3: state
        return None
    return fields[19].decode()  # field 22: starttime


def _still_there(pid: int, started: str | None) -> bool:
    if started is not None:
        return _process_start(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(pid: int, started: str | None) -> None:
    """Worker initializer: exit when process ``pid`` is gone.

    A pool's workers block on their task queue, which they hold both ends of, so they never see
    the process that feeds it die: after a ``kill -9`` of a poller they would stay forever, with
    the memory they hold and any pipe they inherited (the fork server keeps running as long as
    they do). A watching thread ends them within a second instead.
    """

    # Ctrl-C reaches the whole process group: the poller handles it (and ends its pool); a
    # worker would only print a KeyboardInterrupt traceback on the admin's terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(_WATCH_INTERVAL)
            if not _still_there(pid, started):
                os._exit(0)

    threading.Thread(target=watch, name="feedgate-watch-parent", daemon=True).start()


def _orphan_guard() -> dict[str, Any]:
    """Pool options that make its workers exit when this process is gone (see _watch)."""
    me = os.getpid()
    return {"initializer": _watch, "initargs": (me, _process_start(me))}


# --- poll parts held in memory ---------------------------------------------------------------

#: Range size for a poll part in memory: smaller than for files, as parts are smaller and a
#: range's bytes are sent to the worker rather than read by it.
PART_CHUNK_BYTES = 512 * 1024
_shared: ProcessPoolExecutor | None = None
_shared_workers = 0
_shared_lock = threading.Lock()


def shared_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool kept for the life of the process, for reading poll parts.

    Made once and reused: a poller reads many small parts, and a pool per part would cost more
    than it saves. Workers come from a fork server (a clean process started once), not from
    forking the caller: the caller may be a multi-threaded service, and forking it could copy
    a lock another thread holds. As with any multiprocessing start method other than fork, the
    workers import the caller's ``__main__`` module: a script that polls needs the usual
    ``if __name__ == "__main__":`` guard, or the workers fail and parts are read in-process
    (with a warning).
    """
    global _shared, _shared_workers
    with _shared_lock:
        if _shared is None or _shared_workers != workers:
            if _shared is not None:
                _shared.shutdown(wait=False, cancel_futures=True)
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["feedgate.stix._parallel"])
            _shared = ProcessPoolExecutor(
                max_workers=workers, mp_context=context, **_orphan_guard()
            )
            _shared_workers = workers
        return _shared


def _ready() -> None:
    """A task that does nothing: running it means a worker is up."""


def start_workers(workers: int) -> None:
    """Start the shared pool's workers now, so that a poll's first part does not wait for the
    fork server and its imports (the caller goes on with its first request meanwhile)."""
    pool = shared_pool(workers)
    for _ in range(workers):
        pool.submit(_ready)


def _drop_shared(pool: ProcessPoolExecutor) -> None:
    """Forget a pool that broke (a worker was killed): the next read makes a new one."""
    global _shared
    with _shared_lock:
        if _shared is pool:
            _shared = None
    pool.shutdown(wait=False, cancel_futures=True)


#: Observables per batch when a part is read in-process (a worker's batch is its range).
BATCH: Final = 5000
#: Ranges of one part handed to the workers and not yet read back. It bounds what a part in
#: flight holds (the copies sent to the workers, their answers) while keeping the workers busy
#: through the caller's commits.
AHEAD = 12


class PartJob:
    """A poll part handed to the worker pool, read back in order by whoever iterates.

    Made by the thread that receives the part: a feeding thread of its own submits the ranges,
    at most :data:`AHEAD` beyond what has been read back, so the workers start at once and go on
    while the receiving thread fetches the next part and the reading thread commits. A large
    Poll_Response or run of packages is cut into ranges as files are; anything else goes to one
    worker whole. What comes back is exactly what the one-process read says: if a range does not
    read on its own, the input cannot be cut safely, or the pool breaks, the part is read again
    in the iterating process, skipping what was already handed out.
    """

    def __init__(self, data: bytes, workers: int, max_bytes: int) -> None:
        self._data = data
        self._max_bytes = max_bytes
        self._futures: deque[Future[tuple[_Packed, ReadStats]]] = deque()
        self._lock = threading.Condition()
        self._fed = False  # every range submitted (or given up)
        self._in_process = False  # give up on the workers: read in-process
        self._stopped = False
        self._pool = shared_pool(workers)
        if len(data) > max_bytes:  # the in-process read says so, with the reader's message
            self._fed = self._in_process = True
            return
        split = plan(data[:65536]) if len(data) >= 2 * PART_CHUNK_BYTES else None
        if split is None:
            try:
                self._futures.append(self._pool.submit(_read_whole, data, max_bytes))
            except BrokenProcessPool as exc:
                self._broken(exc)
            self._fed = True
            return
        threading.Thread(
            target=self._feed, args=(split,), name="feedgate-part-feed", daemon=True
        ).start()

    def _broken(self, exc: BaseException) -> None:
        _drop_shared(self._pool)
        log.warning("parse workers failed (%s); reading in one process", exc)
        self._in_process = True

    def _feed(self, split: Plan) -> None:
        view = memoryview(self._data)
        try:
            for start, end in ranges(io.BytesIO(self._data), split, PART_CHUNK_BYTES):
                with self._lock:
                    while len(self._futures) >= AHEAD and not self._stopped:
                        self._lock.wait()
                    if self._stopped:
                        return
                    range_data = bytes(view[start:end])
                    self._futures.append(self._pool.submit(_read_bytes, range_data, split))
                    self._lock.notify_all()
        except BrokenProcessPool as exc:
            with self._lock:
                self._broken(exc)
        except Exception:  # _Unsafe, or a pool shut down: the one-process read says the rest
            with self._lock:
                self._in_process = True
        finally:
            with self._lock:
                self._fed = True
                self._lock.notify_all()

    def _next(self) -> Future[tuple[_Packed, ReadStats]] | None:
        """The next range's future (left in place until read), or None when there is none."""
        with self._lock:
            while not self._futures and not self._fed:
                self._lock.wait()
            return self._futures[0] if self._futures else None

    def cancel(self) -> None:
        """Drop what the workers have not started, and submit nothing more."""
        with self._lock:
            self._stopped = True
            for future in self._futures:
                future.cancel()
            self._futures.clear()
            self._lock.notify_all()

    def observables(self, stats: ReadStats) -> Iterator[Observable]:
        """The part's observables in input order; counts go to ``stats``."""
        for batch in self.batches(stats):
            yield from batch.observables()

    def batches(self, stats: ReadStats, size: int = BATCH) -> Iterator[ObservableBatch]:
        """The part's observables in input order, as batches (one per range, or of ``size``
        when read in-process); counts go to ``stats``."""
        yielded = 0
        try:
            while (future := self._next()) is not None:
                batch = _collect_batch(future, stats)
                with self._lock:
                    self._futures.popleft()
                    self._lock.notify_all()
                yielded += batch.size
                yield batch
            if not self._in_process:
                return
        except BrokenProcessPool as exc:
            self._broken(exc)
        except Exception:
            pass  # a range that does not read on its own: the one-process read says why
        finally:
            self.cancel()
        fresh = ReadStats()
        from feedgate.stix import read_observables

        found = read_observables(io.BytesIO(self._data), stats=fresh, max_bytes=self._max_bytes)
        yield from batched(_read_again(found, yielded, fresh, stats), size)


def read_bytes_parallel(
    data: bytes, stats: ReadStats, workers: int, max_bytes: int
) -> Iterator[Observable]:
    """Observables of ``data`` (a poll part) read by ``workers`` processes, in input order;
    exactly what the one-process read says, as :func:`read_parallel` does for files."""
    yield from PartJob(data, workers, max_bytes).observables(stats)


def batched(observables: Iterable[Observable], size: int = BATCH) -> Iterator[ObservableBatch]:
    """``observables`` in batches of at most ``size``. When reading them fails, what was read
    before the error is still handed out, then the error is raised (as the reader does)."""
    chunk: list[Observable] = []
    try:
        for obs in observables:
            chunk.append(obs)
            if len(chunk) >= size:
                yield ObservableBatch.of(chunk)
                chunk = []
    except Exception:
        if chunk:
            yield ObservableBatch.of(chunk)
        raise
    if chunk:
        yield ObservableBatch.of(chunk)

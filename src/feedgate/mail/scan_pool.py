"""Scanning in worker processes: what the gateway and the milter run their scans on.

A :class:`~feedgate.mail.scanner.Scanner` is pure Python, so threads share one core; processes
use every core while the event loop only moves bytes. Each worker (spawned, so it starts clean
whatever the parent holds) opens the manager's database itself and keeps its own Scanner,
which follows polls, rules and exceptions without a restart as any Scanner does. Every message
that passes goes into the mail index, so a later poll's observables are matched against it
(the retro-scan of ``feedgate serve``).

:meth:`ScanPool.scan` is the one way in: at most ``workers`` scans run at once, the others wait
their turn without counting against the time limit. A scan past its limit (its worker is
stuck) or a pool that broke (a worker killed) is answered with :class:`ScanFailed` and the pool
is replaced by a fresh one, the stuck workers killed; the callers answer a failed scan with a
temporary failure, so the sender keeps the message.

A worker ignores SIGINT (a terminal's Ctrl-C reaches the whole process group: the parent
decides when its workers stop) and ends itself when its parent dies, even by ``kill -9``, so
no worker outlives the gateway or milter that started it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from typing import Any

from .model import Envelope
from .policy import Verdict

__all__ = ["ScanFailed", "ScanPool"]

log = logging.getLogger("feedgate.scan")


class ScanFailed(Exception):
    """The scan raised, or passed its time limit; the message is to be tempfailed."""


# ---- in the worker processes ----------------------------------------------------------------

_worker_scanner: Any = None  # the Scanner of this worker process (set by _init_worker)


def _end_with_parent() -> None:
    """Exit as soon as the parent process is gone (its sentinel becomes ready), so a parent
    killed with ``kill -9`` leaves no worker behind holding the database."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(db: str) -> None:
    """Open the store and build this process's own Scanner (a pool initializer)."""
    global _worker_scanner
    import signal

    from feedgate.db import engine
    from feedgate.feeds.store import FeedStore

    from .mailindex import MailIndex
    from .policy_store import PolicyStore
    from .scanner import Scanner

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent()
    store = FeedStore(engine(db))
    _worker_scanner = Scanner(
        store,
        PolicyStore(store.engine, store.source_names),
        log=True,
        mail_index=MailIndex(store.engine),
    )


def _warm() -> int:
    """Read the snapshot and the policy once, so the first message does not wait for them."""
    _worker_scanner.scan(b"Subject: feedgate warm-up\r\n\r\n\r\n")
    return os.getpid()


def _scan(raw: bytes, ident: str, client_ip: str | None, mail_from: str) -> Verdict:
    verdict: Verdict = _worker_scanner.scan(
        raw, message=ident, client_ip=client_ip, envelope_from=mail_from
    )
    return verdict


# ---- in the parent --------------------------------------------------------------------------


def _say_if_failed(warming: asyncio.Future[list[int]]) -> None:
    if not warming.cancelled() and warming.exception() is not None:
        log.error("the new scanning workers failed to start: %s", warming.exception())


class ScanPool:
    """``workers`` scanning processes on the manager's database ``db`` (module doc). Start it
    with :meth:`start` inside the event loop that will call :meth:`scan`."""

    def __init__(self, db: str, workers: int, timeout: float) -> None:
        self.db = db
        self.workers = workers
        self.timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._warming: asyncio.Future[list[int]] | None = None
        #: The pids of the current pool's workers (after :meth:`start` or :meth:`ready`).
        self.worker_pids: list[int] = []

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.db,),
        )

    async def start(self) -> list[int]:
        """Start the workers and have each read the store once; their pids. Raises what
        opening the store raises, so a bad database is said at start, not per message."""
        self._pool = self._new_pool()
        self._slots = asyncio.Semaphore(self.workers)
        try:
            return await self._start_workers()
        except BaseException:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise

    async def _start_workers(self) -> list[int]:
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        pids = await asyncio.gather(
            *(loop.run_in_executor(self._pool, _warm) for _ in range(self.workers))
        )
        self.worker_pids = sorted(set(pids))
        return self.worker_pids

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        """A fresh pool instead of ``broken`` (once: several failing scans see one pool)."""
        if self._pool is not broken:
            return
        self._pool = self._new_pool()
        for process in list((getattr(broken, "_processes", None) or {}).values()):
            process.kill()  # a stuck scan: its worker would hold a slot for good
        broken.shutdown(wait=False, cancel_futures=True)
        self._warming = asyncio.ensure_future(self._start_workers())
        self._warming.add_done_callback(_say_if_failed)

    async def ready(self) -> list[int]:
        """Wait until a replaced pool's workers are up (at once if none is starting); their
        pids. What a test awaits instead of sleeping."""
        if self._warming is not None:
            with contextlib.suppress(Exception):  # said once, by _say_if_failed
                await asyncio.shield(self._warming)
        return self.worker_pids

    async def scan(self, raw: bytes, envelope: Envelope) -> Verdict:
        """The verdict on ``raw`` from a worker; :class:`ScanFailed` when there is none."""
        assert self._slots is not None and self._pool is not None, "ScanPool.start() first"
        if self._warming is not None and not self._warming.done():
            await self.ready()  # a fresh pool's start is not this message's scan time
        loop = asyncio.get_running_loop()
        async with self._slots:
            pool = self._pool
            try:
                future = loop.run_in_executor(
                    pool,
                    _scan,
                    raw,
                    envelope.queue_id or "",
                    envelope.client_ip,
                    envelope.mail_from,
                )
                return await asyncio.wait_for(future, self.timeout)
            except TimeoutError:
                self._replace(pool)
                raise ScanFailed(f"the scan took over {self.timeout:g} s") from None
            except concurrent.futures.BrokenExecutor as exc:
                self._replace(pool)
                raise ScanFailed(f"a scanning worker died ({exc})") from None
            except Exception as exc:  # the scanner's own failure (a database error, ...)
                raise ScanFailed(f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        """Let the workers go, waiting for them (a scan in flight is not answered)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

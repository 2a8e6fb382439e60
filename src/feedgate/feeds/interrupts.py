"""Ctrl-C where it cannot cut a database conversation in half.

Python raises ``KeyboardInterrupt`` between any two bytecodes, and psycopg waits for the server
in Python: a Ctrl-C that lands inside a statement leaves the connection mid-query ("can't
change 'autocommit' now: connection in transaction status ACTIVE"), and the bookkeeping that
follows (the "interrupted" log line, the status, the lease) then fails on it. So while
:func:`deferred_interrupts` is in force, Ctrl-C only takes effect in a wait marked
:func:`interruptible` (a poll answer still to come, a backoff): a Ctrl-C at any other moment is
kept and raised at the next such wait, or when the block ends. A poll is therefore stopped at
once while it waits on the network, and never inside the database.

Only the main thread receives signals, so only its waits are marked; elsewhere (scheduler
threads, library use without :func:`deferred_interrupts`) both are no-ops.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

T = TypeVar("T")


class _State:
    installed = False
    pending = False
    waiting = 0  # depth of interruptible() in the main thread


_state = _State()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _state.waiting > 0:
        raise KeyboardInterrupt
    _state.pending = True


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Within the block, Ctrl-C takes effect only in :func:`interruptible` waits (or at the
    block's end). Outside the main thread it changes nothing."""
    if not _in_main_thread() or _state.installed:
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    _state.installed, _state.pending, _state.waiting = True, False, 0
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        pending, _state.installed, _state.pending = _state.pending, False, False
    if pending:
        raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[None]:
    """A wait that Ctrl-C may end at once; a Ctrl-C kept from before is raised on entry."""
    if not (_state.installed and _in_main_thread()):
        yield
        return
    if _state.pending:
        _state.pending = False
        raise KeyboardInterrupt
    _state.waiting += 1
    try:
        yield
    finally:
        _state.waiting -= 1


def interruptible_items(items: Iterable[T]) -> Iterator[T]:
    """``items``, each one waited for in :func:`interruptible` (what is done with an item, a
    database write say, is not)."""
    iterator = iter(items)
    while True:
        with interruptible():
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item

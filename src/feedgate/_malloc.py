"""Keep glibc's allocator from holding several copies of a poll's peak memory.

glibc gives threads that allocate at the same time malloc arenas of their own (up to eight per
core), and memory freed in one arena is reused only by that arena. A poll has a few threads that
take turns with large buffers (the network reader, the part feeders, the store), so each arena
grows to hold its own peak: at 1,000,000 indicators that was 40 MB of peak RSS for nothing.
Two arenas are plenty for a process whose threads mostly wait on I/O or on the GIL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

_M_ARENA_MAX = -8  # from glibc's malloc.h
_done = False
_lock = threading.Lock()


def limit_arenas(count: int = 2) -> None:
    """Cap glibc's malloc arenas at ``count`` for this process (once; a no-op elsewhere).

    Arenas that exist already stay; threads started afterwards share the capped set.
    """
    global _done
    with _lock:
        if _done or not sys.platform.startswith("linux"):
            return
        _done = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and others: nothing to tune
            return
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
        mallopt(_M_ARENA_MAX, count)

"""Run an ASGI app with uvicorn on a socket we bind ourselves.

Binding first means port 0 works (tests and `feedgate up` ask the kernel for a free port and
read it back) and the address is known before the server starts. Used by the hub and the
manager's web server alike.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def base_url(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def serve(
    app: Any, sock: socket.socket, *, ready: Callable[[], None] = lambda: None, **options: Any
) -> None:
    """Serve ``app`` on ``sock`` until interrupted (the foreground of `feedgate hub serve`).

    Ctrl-C (SIGINT) and SIGTERM are the ways to stop a server, and from before ``ready`` runs
    they only ask the server to stop: no KeyboardInterrupt is raised into whatever the main
    thread is doing. (Python's default SIGINT handler raises it anywhere, and one raised inside
    an import's clean-up callback is printed as "Exception ignored" and lost, which left a
    `feedgate up` stopped right after it said "API:" serving for ever.) uvicorn shuts down
    gracefully and the call returns normally (exit 0, the caller's clean-up runs). ``ready``
    runs once that holds (say where the server is there: whoever reads it may stop the server
    at once).
    """
    config = uvicorn.Config(app, log_level="warning", lifespan="off", **options)
    server = uvicorn.Server(config)
    main = threading.current_thread() is threading.main_thread()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True  # uvicorn starts, sees it, and shuts down at once

    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS} if main else {}
    try:
        ready()
        # uvicorn swaps in its own handlers while it runs; on the way out it puts ours back
        # and raises the signals it caught again, which ``stop`` takes without harm.
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: The signals that stop a server started by :func:`serve`.
_STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def serving(app: Any, host: str = "127.0.0.1", **options: Any) -> Iterator[str]:
    """Serve ``app`` in a background thread for the duration of the block; yields its URL."""
    sock = bind(host)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

"""A gateway (and the Maildir sink it may relay to) on an asyncio loop of its own, in a thread.

For a process whose main thread serves something else: ``feedgate up`` keeps the REST API
(uvicorn) in the main thread, where the stop signals arrive, and runs the mail side here. The
gateway's scanning workers are spawn-started processes, which a pool made from this thread
starts as well as one made from the main thread (spawn does not fork the threads).

:meth:`GatewayThread.start` returns once the workers are up and both servers listen (or raises
what stopped them, having cleaned up); :meth:`GatewayThread.stop` stops the gateway (no longer
listening, open connections closed, the worker processes shut down and waited for), then the
sink, then the loop and its thread. Both are called from the owning thread; ``stop`` is
idempotent and safe after a failed or interrupted ``start``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from typing import Final

from .gateway import Gateway
from .maildir_sink import MaildirSink

__all__ = ["STOP_TIMEOUT", "GatewayThread"]

log = logging.getLogger("feedgate.gateway")

#: Seconds :meth:`GatewayThread.stop` waits for the servers and the workers: the messages
#: already taken are let be answered, for up to :data:`ANSWER_GRACE` (the rest is the workers').
STOP_TIMEOUT: Final = 90.0
#: Seconds the gateway's stop lets messages past their final dot be scanned and relayed.
ANSWER_GRACE: Final = 60.0


class GatewayThread:
    """Runs ``gateway`` on the listening ``sock`` and, when given, ``sink`` on ``sink_sock``."""

    def __init__(
        self,
        gateway: Gateway,
        sock: socket.socket,
        *,
        sink: MaildirSink | None = None,
        sink_sock: socket.socket | None = None,
        name: str = "feedgate-gateway",
    ) -> None:
        if (sink is None) != (sink_sock is None):
            raise ValueError("a sink needs its socket, and a socket its sink")
        self.gateway = gateway
        self.sink = sink
        self._socks = [s for s in (sock, sink_sock) if s is not None]
        self._sock, self._sink_sock = sock, sink_sock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = False

    @property
    def running(self) -> bool:
        """Whether the loop's thread runs (from :meth:`start` until :meth:`stop`)."""
        return self._thread.is_alive()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self, timeout: float | None = None) -> list[int]:
        """Start the sink (if any) and the gateway; the gateway's worker pids. On any failure
        or interruption (Ctrl-C while the workers start) everything is stopped again and the
        exception raised."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            self.stop()
            raise

    async def _start(self) -> list[int]:
        if self.sink is not None and self._sink_sock is not None:
            await self.sink.start(self._sink_sock)
        return await self.gateway.start(self._sock)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the gateway, the sink and the loop (module doc); then the sockets are closed."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self._thread.is_alive():
                future = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
                try:
                    future.result(timeout)
                except concurrent.futures.TimeoutError:
                    log.error("the gateway did not stop within %g s", timeout)
                except Exception:  # say it, and still stop the loop and close the sockets
                    log.exception("the gateway did not stop cleanly")
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()
        finally:
            for sock in self._socks:
                sock.close()

    async def _stop(self) -> None:
        try:
            await self.gateway.stop(grace=ANSWER_GRACE)
        finally:
            try:
                if self.sink is not None:
                    await self.sink.stop()
            finally:
                await self._loop.shutdown_default_executor()

"""A fault-injecting HTTP proxy on 127.0.0.1 in front of one server, for the poller's fault tests.

The client talks to the proxy as if it were the server (point a Source's hostname/port at it).
For every request the proxy rewrites the request to the upstream host (``Host``, HTTP/1.0 and
``Connection: close``, so the whole answer is simply everything until the server closes), reads
the answer, and sends it back re-framed (``Content-Length``, ``Connection: close``), one request
per connection. Between the two it can inject, per scripted request:

* ``status(code)``: answer with HTTP ``code`` (an HTML error page) without asking the server;
* ``reset(after)``: send ``after`` bytes of the answer (head included), then a TCP reset;
* ``truncate(after)``: send the head (without a length) and ``after`` bytes of the body, then
  close cleanly, so the client sees a complete HTTP answer holding truncated XML;
* ``stall(after)``: send ``after`` bytes, then nothing more until the proxy stops (the client's
  read timeout fires).

Persistent settings: ``lie_more`` rewrites ``more="false"`` to ``more="true"`` in every answer
(a server that lies about more); ``delay`` sleeps between chunks of ``chunk`` bytes (a slow
server, for killing a poller mid-segment).

Faults are scripted with :meth:`FaultProxy.script`: the first ``skip`` requests pass, then the
next ``times`` requests get the fault (``times=None``: every request until :meth:`clear`).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Literal

Kind = Literal["status", "reset", "truncate", "stall"]

_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    401: "Unauthorized",
    403: "Forbidden",
}
_HOP = (
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"content-length",
    b"transfer-encoding",
    b"host",
)


@dataclass
class _Fault:
    kind: Kind
    arg: int
    skip: int
    times: int | None


@dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it, and what it did to the answer."""

    method: str
    path: str
    message: str  # the TAXII message's element name (Poll_Request, Poll_Fulfillment, ...)
    fault: str  # "pass", "status 502", "reset 300", ...
    size: int = 0  # bytes of the server's whole answer (0: the server was not asked)


class FaultProxy:
    """``with FaultProxy(host, port) as proxy:`` then ``proxy.host`` / ``proxy.port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.seen: list[Seen] = []
        self.lie_more = False
        self.delay = 0.0
        self.chunk = 256
        #: answers being sent right now (a client killed mid-answer leaves one behind)
        self.sending = 0
        self._fault: _Fault | None = None
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    # -- set-up ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()

    def script(self, kind: Kind, arg: int = 0, *, skip: int = 0, times: int | None = None) -> None:
        """From now on: pass ``skip`` requests, then apply the fault to ``times`` of them."""
        with self._lock:
            self._fault = _Fault(kind, arg, skip, times)

    def clear(self) -> None:
        """Pass everything from now on (``lie_more`` and ``delay`` too are reset)."""
        with self._lock:
            self._fault = None
        self.lie_more = False
        self.delay = 0.0

    def faults(self) -> list[Seen]:
        return [s for s in self.seen if s.fault != "pass"]

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            if fault.skip > 0:
                fault.skip -= 1
                return None
            if fault.times is not None:
                if fault.times <= 0:
                    return None
                fault.times -= 1
            return fault

    # -- serving -----------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            request = _read_request(client)
            if request is None:
                return
            method, path, headers, body = request
            fault = self._next_fault()
            label = "pass" if fault is None else f"{fault.kind} {fault.arg}"
            name = _message_name(body)
            if fault is not None and fault.kind == "status":
                self.seen.append(Seen(method, path, name, label))
                self._send(client, _error_page(fault.arg), None)
                return
            answer = self._forward(method, path, headers, body)
            self.seen.append(Seen(method, path, name, label, len(answer)))
            self._send(client, answer, fault)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _forward(self, method: str, path: str, headers: list[bytes], body: bytes) -> bytes:
        host, port = self.upstream
        lines = [f"{method} {path} HTTP/1.0".encode(), f"Host: {host}:{port}".encode()]
        lines += [h for h in headers if h.split(b":", 1)[0].strip().lower() not in _HOP]
        lines += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
        with socket.create_connection(self.upstream, timeout=30) as upstream:
            upstream.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            data = bytearray()
            while chunk := upstream.recv(65536):
                data += chunk
        return bytes(data)

    def _send(self, client: socket.socket, answer: bytes, fault: _Fault | None) -> None:
        head, _, body = answer.partition(b"\r\n\r\n")
        if self.lie_more:
            body = body.replace(b'more="false"', b'more="true"')
        status, *fields = head.split(b"\r\n")
        kept = [f for f in fields if f.split(b":", 1)[0].strip().lower() not in _HOP]
        truncating = fault is not None and fault.kind == "truncate"
        if truncating:
            assert fault is not None
            body = body[: fault.arg]
        else:
            kept.append(f"Content-Length: {len(body)}".encode())
        kept.append(b"Connection: close")
        data = b"\r\n".join([status, *kept]) + b"\r\n\r\n" + body
        limit = len(data)
        if fault is not None and fault.kind in ("reset", "stall"):
            limit = min(fault.arg, len(data))
        self._write(client, data[:limit])
        if fault is not None and fault.kind == "reset":
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif fault is not None and fault.kind == "stall":
            self._stop.wait(60)
        else:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)

    def _write(self, client: socket.socket, data: bytes) -> None:
        if not self.delay:
            client.sendall(data)
            return
        with self._lock:
            self.sending += 1
        try:
            for start in range(0, len(data), self.chunk):
                client.sendall(data[start : start + self.chunk])
                time.sleep(self.delay)
        finally:
            with self._lock:
                self.sending -= 1


def _read_request(client: socket.socket) -> tuple[str, str, list[bytes], bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    line, *headers = head.split(b"\r\n")
    method, target, _ = line.decode("latin-1").split(" ", 2)
    if "://" in target:  # absolute form: keep the path
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    length = 0
    for header in headers:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            break
        body += chunk
    return method, target, headers, body


def _message_name(body: bytes) -> str:
    """The root element's local name of a TAXII request body ("" if none)."""
    start = body.find(b"<", body.find(b"?>") + 1 if body.startswith(b"<?") else 0)
    while start >= 0 and body[start + 1 : start + 2] in (b"!", b"?"):
        start = body.find(b"<", start + 1)
    if start < 0:
        return ""
    name = body[start + 1 :].split(maxsplit=1)[0].split(b">")[0].decode("latin-1")
    return name.rpartition(":")[2]


def _error_page(code: int) -> bytes:
    reason = _REASONS.get(code, "Error")
    body = (
        f"<html><head><title>{code} {reason}</title></head>"
        f"<body><h1>{code} {reason}</h1></body></html>"
    ).encode()
    return (f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/html\r\n\r\n").encode() + body

"""Sockets by hand: HTTP requests no client library would send (for servers' limits), and a
port nobody listens on (for clients' failures)."""

from __future__ import annotations

import socket

import httpx


def declared_but_not_sent(url: str, path: str, length: int, headers: str = "") -> bytes:
    """A POST to ``url`` + ``path`` declaring a ``length``-byte body and sending none (extra
    ``headers`` as raw ``Name: value\\r\\n`` lines): the answer, read raw to the end."""
    parts = httpx.URL(url)
    with socket.create_connection((parts.host, parts.port or 80), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {parts.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{headers}Connection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def closed_port() -> int:
    """A port on 127.0.0.1 that nobody listens on: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

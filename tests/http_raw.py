"""HTTP requests no client library would send, written on a socket: for servers' limits."""

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

"""Request bodies read with a limit, for every HTTP service here (the hub's TAXII and REST
services, the manager's REST API).

Starlette's ``request.body()`` reads whatever the client sends into memory: one request of a few
GB would take a server down. These read the body as it streams in and give up as soon as it
passes the limit, so the caller answers 413 (or the protocol's own refusal) having held at most
the limit in memory.
"""

from __future__ import annotations

from starlette.requests import Request


async def read_limited(request: Request, max_bytes: int) -> bytes | None:
    """The body of ``request``, or None when it is longer than ``max_bytes`` (a declared
    Content-Length over the limit is refused before anything is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        return None
    size = 0
    parts: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            return None
        parts.append(chunk)
    return b"".join(parts)


def read_limited_from_thread(request: Request, max_bytes: int) -> bytes | None:
    """:func:`read_limited` for a handler running in a worker thread."""
    import anyio.from_thread

    return anyio.from_thread.run(read_limited, request, max_bytes)

"""``GET /api/v1/retro``: the retro-scan's findings (:func:`feedgate.mail.retro.retro_finds`),
the rows ``feedgate retro --format jsonl`` prints, through the same call and the same window
(``since``: a duration back from now, or ``all``; default 7d)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedgate.mail.retro import retro_finds

from .api_policy import since_moment

__all__ = ["RETRO_ROW", "retro_routes"]

_TEXT: Final = {"type": "string"}
_MAYBE: Final = {"type": "string", "nullable": True}
_WHEN: Final = {"type": "string", "format": "date-time"}
_PROPERTIES: Final[dict[str, Any]] = {
    "id": {"type": "integer"},
    "at": {**_WHEN, "description": "when the retro-scan found it"},
    "scanned_at": {**_WHEN, "description": "when the message passed"},
    "name": {**_MAYBE, "description": "the scan's name for it: queue id or path"},
    "message_id": _MAYBE,
    "envelope_from": _MAYBE,
    "subject": _MAYBE,
    "client_ip": _MAYBE,
    "passed": {**_TEXT, "description": "what was done then: deliver, log, tag, header"},
    "action": {**_TEXT, "description": "what the rules would do to it now"},
    "rule": {**_MAYBE, "description": "the rule that would decide"},
    "mode": {
        "type": "string",
        "enum": ["enforce", "monitor"],
        "description": "monitor: the source is in monitor mode (what it would have caught)",
    },
    "part": {**_TEXT, "description": "the message's parts the observable was in"},
    "kind": _TEXT,
    "value": _TEXT,
    "source": _TEXT,
}
#: One finding as the API answers it (OpenAPI schema): every key always there.
RETRO_ROW: Final[dict[str, Any]] = {
    "type": "object",
    "required": list(_PROPERTIES),
    "properties": _PROPERTIES,
}


def retro_routes(
    engine: sa.Engine,
    guard: Callable[[Callable[[Request], Response]], Callable[[Request], Response]],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    """The retro route; ``guard`` is the API's token check and error mapping."""

    def retro(request: Request) -> Response:
        q = request.query_params
        start = since_moment(q.get("since"), now())
        finds = retro_finds(engine, since=start, source=q.get("source") or None)
        return JSONResponse([f.to_dict() for f in finds])

    return [Route("/api/v1/retro", guard(retro), methods=["GET"])]

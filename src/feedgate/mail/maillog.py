"""The mail log: one JSON line per message the gateway answered, in a file.

What an admin greps for when a user asks "where is my mail": the time, the queue id (also in
the 250 reply the sender's MTA logs; behind Postfix, Postfix's own, from XFORWARD), the client
IP and its HELO name, the envelope sender, the recipients (a
count and the first few), the action, the rules and each matched observable with its source,
and the reply given; when a source in monitor mode matched, ``would_have`` lists those
observables with the rules and the action that would have applied (nothing was done for them:
this is where an admin reads what a new source would do before enforcing it). The match log in
the database (``feedgate hits``) gets the same verdict from the scanner; this file is the
per-message trail, written even for clean mail.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .model import Envelope
from .policy import Verdict

__all__ = ["FIRST_RECIPIENTS", "MailLog", "default_path", "entry"]

#: Recipients named in a line (the count is always there).
FIRST_RECIPIENTS: Final = 5
FILE_NAME: Final = "mail.log"


def default_path() -> Path:
    """``$XDG_DATA_HOME/feedgate/mail.log`` (the data directory of :func:`feedgate.db.data_dir`)."""
    from feedgate.db import data_dir

    return data_dir() / FILE_NAME


def entry(
    envelope: Envelope,
    action: str,
    reply: str,
    verdict: Verdict | None = None,
    *,
    at: datetime | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The log line's fields for one message (``verdict`` None: no verdict, e.g. a scan that
    failed, said in ``note``); ``would_have`` only when the verdict has monitored matches."""
    fields: dict[str, Any] = {
        "time": (at or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "queue_id": envelope.queue_id,
        "client_ip": envelope.client_ip,
        "helo": envelope.helo,
        "from": envelope.mail_from,
        "recipients": len(envelope.rcpt_tos),
        "first_recipients": list(envelope.rcpt_tos[:FIRST_RECIPIENTS]),
        "action": action,
        "rules": list(verdict.rules) if verdict else [],
        "matches": [
            {"part": str(m.part), "kind": m.kind, "value": m.value, "source": m.source}
            for m in (verdict.matches if verdict else ())
        ],
        "reply": reply,
    }
    if verdict is not None and verdict.monitored:
        fields["would_have"] = [w.to_dict() for w in verdict.would_have()]
    if note:
        fields["note"] = note
    return fields


class MailLog:
    """Appends lines to ``path`` (its folder made, mode 0600 on creation: the log names
    people's addresses). Thread-safe; each line is written with one ``write``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, fields: dict[str, Any]) -> None:
        line = json.dumps(fields, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

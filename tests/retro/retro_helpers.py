"""What the retro tests share: a store with sources, polls through the real segment upsert,
messages built with ``email``, a clock the test moves, and ``feedgate`` run as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from clean_env import clean_env
from feedgate import db as feedgate_db
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.observables import Kind, LayeredContext, Observable

#: The real clock, a day back: any day the tests run on.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
PULSE = {"package_id": "pkg-1", "package_title": "Bad pulse"}


class Clock:
    """A wall clock the test moves (``now``) and a monotonic one beside it (``tick``)."""

    def __init__(self, start: datetime = T0) -> None:
        self.at = start
        self.mono = 0.0

    def now(self) -> datetime:
        return self.at

    def tick(self) -> float:
        return self.mono

    def advance(self, delta: timedelta) -> None:
        self.at += delta
        self.mono += delta.total_seconds()


def open_store(url: str, *names: str, **fields: Any) -> FeedStore:
    store = FeedStore(feedgate_db.engine(url))
    for name in names:
        store.add_source(Source(name=name, hostname=f"{name}.example", collection="c", **fields))
    return store


def obs(kind: Kind, value: str, title: str | None = None) -> Observable:
    context = LayeredContext(PULSE, {"indicator_title": title or f"{kind} {value}"})
    return Observable(kind, value, None, context)


def poll(store: FeedStore, *observables: Observable, source: str = "otx", at: datetime) -> None:
    """One poll segment of ``source`` as the poller writes it (FeedStore.segment's upsert)."""
    with store.segment(source) as seg:
        seg.upsert(list(observables), at)
        seg.finish(at)


def message(
    body: str,
    *,
    subject: str = "hello",
    sender: str = "friend@example.org",
    message_id: str | None = None,
    attachment: bytes | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["Subject"] = subject
    if message_id is not None:
        msg["Message-ID"] = message_id
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(
            attachment, maintype="application", subtype="octet-stream", filename="a.bin"
        )
    return bytes(msg)


class Cli:
    """``python -m feedgate.cli`` on the database ``db`` (given by FEEDGATE_DB)."""

    def __init__(self, tmp_path: Path, key: str) -> None:
        self.db = tmp_path / "feeds.db"
        # No FEEDGATE_ setting of the caller leaks in, except the clock (make test-future):
        # the command must run on the test's clock.
        self.vars = clean_env()
        self.vars.update(
            FEEDGATE_DB=str(self.db),
            XDG_DATA_HOME=str(tmp_path / "data"),
            FEEDGATE_SECRET_KEY=key,
        )

    def run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "feedgate.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.vars,
            input=None if stdin is None else stdin.decode(),
        )

    def ok(self, *args: str, stdin: bytes | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def jsonl(self, *args: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.ok(*args).splitlines()]

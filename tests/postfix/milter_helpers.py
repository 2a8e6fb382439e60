"""What the milter tests share: a feed store whose sources each trigger one action, messages
that carry their observables, the milter as a real ``feedgate milter`` process or in this
process (for an injected quarantine), and SMTP sending that keeps each reply."""

from __future__ import annotations

import os
import select
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from feedgate.db import engine
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.milter import ListenAddress, MilterFilter, QuarantineFn, parse_listen, serve
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.scanner import Scanner
from feedgate.observables import Kind, LayeredContext, Observable

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "[SUSPECT]"
#: source name -> (its rule's action, the domain it lists)
FEEDS = {
    "rejectfeed": ("reject", "reject.example"),
    "dropfeed": ("drop", "drop.example"),
    "quarfeed": ("quarantine", "quarantine.example"),
    "tagfeed": ("tag", "tag.example"),
    "hdrfeed": ("header", "header.example"),
}


def make_store(path: Path) -> tuple[FeedStore, PolicyStore]:
    """A real store: each source of FEEDS lists its domain, and one rule per source does its
    action (the default rule, which quarantines everything, disabled)."""
    store = FeedStore(engine(str(path)))
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for name, (_action, domain) in FEEDS.items():
        store.add_source(Source(name=name, hostname="otx.example", collection="user_AV"))
        context = LayeredContext({"package_title": f"{name} pulse"}, {"indicator_title": domain})
        with store.segment(name) as seg:
            seg.upsert([Observable(Kind.DOMAIN, domain, None, context)], at)
            seg.finish(at)
    policy = PolicyStore(store.engine, store.source_names)
    policy.set_enabled("threat-feeds", False)
    for name, (action, _domain) in FEEDS.items():
        policy.add_rule(
            f"{action}-rule",
            sources=[name],
            action=action,
            subject_prefix=PREFIX if action == "tag" else None,
        )
    return store, policy


def message(subject: str, url_host: str | None = None, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '.')}@client.test>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    link = f"see https://www.{url_host}/login\n" if url_host else "nothing to see\n"
    msg.set_content(f"hello,\n{link}")
    return msg.as_bytes().replace(b"\n", b"\r\n")


@dataclass
class Sent:
    subject: str
    code: int
    reply: bytes


def send_all(port: int, messages: list[tuple[str, bytes]]) -> list[Sent]:
    """Send every message over one SMTP connection (RSET after a refusal), keeping each reply:
    the refusal of MAIL/RCPT, else the reply to the end of DATA."""
    results = []
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.feedgate.test")
        for subject, raw in messages:
            code, text = client.mail("alice@example.org")
            if code == 250:
                code, text = client.rcpt("bob@example.net")
            if code in (250, 251):
                try:
                    code, text = client.data(raw)
                except smtplib.SMTPDataError as exc:
                    code, text = exc.smtp_code, exc.smtp_error
            if code != 250:
                client.rset()
            results.append(Sent(subject, code, text))
    return results


# --- the milter as a process --------------------------------------------------------------


class MilterProcess:
    """``feedgate milter`` as a real process on a port the system chose (read back from its
    first line); stopped with SIGTERM (SIGKILL after a deadline) by its process id."""

    def __init__(self, db: Path, *, extra: tuple[str, ...] = ()) -> None:
        self.db = db
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        self.stderr_path = db.parent / "milter.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "feedgate.cli",
                "milter",
                "--listen",
                "inet:127.0.0.1:0",
                "--db",
                str(db),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.address = self._read_address()

    def _read_address(self, timeout: float = 30.0) -> ListenAddress:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline().decode()
                if line.startswith("milter:"):
                    return parse_listen(line.split(None, 1)[1].strip())
                if not line and self.proc.poll() is not None:
                    break
        self.stop()
        raise AssertionError(f"feedgate milter did not start:\n{self.stderr()}")

    @property
    def spec(self) -> str:
        return str(self.address)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


# --- the milter in this process -----------------------------------------------------------


@contextmanager
def milter_in_process(
    scanner: Scanner, quarantine: QuarantineFn, **options: Any
) -> Iterator[ListenAddress]:
    """:func:`serve` on a free port in an event loop thread of this process (for a
    quarantine callable the test can see); cancelled at exit."""
    from anyio.abc import TaskStatus
    from anyio.from_thread import start_blocking_portal

    milter = MilterFilter(scanner, quarantine=quarantine, **options)

    async def run(*, task_status: TaskStatus[ListenAddress]) -> None:
        def ready(bound: ListenAddress) -> None:
            task_status.started(bound)

        await serve(milter, parse_listen("inet:127.0.0.1:0"), ready=ready)

    with start_blocking_portal() as portal:
        future, address = portal.start_task(run)
        try:
            yield address
        finally:
            future.cancel()


def discarded_ids(lines: Callable[[str], list[str]]) -> list[str]:
    """Queue ids of the messages Postfix discarded on the milter's word (its log)."""
    return [line.split(": ")[1] for line in lines("milter-discard")]

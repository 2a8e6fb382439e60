"""What the gateway fault tests behind Postfix share: ``feedgate gateway`` as a real process
that can be stopped, restarted or killed with SIGKILL (its scanning workers with it), a TCP proxy
the test controls (down, refusing, forwarding, or holding a connection after so many bytes), big
messages made fast, and the ledger that says where every sent message is.

The ledger is the point of these tests: a message the client handed to Postfix must be found
exactly once, at the sink, in feedgate's quarantine, bounced to its sender by Postfix (the
gateway's 5xx), or still in Postfix's queue. Messages are told apart by their Message-ID.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser
from email.utils import formatdate
from pathlib import Path
from typing import Any

from milter_helpers import ROOT, message

from feedgate.db import engine
from feedgate.mail.quarantine import QuarantineStore
from postfix import Postfix, Sink, alive, wait_for

#: Postfix settings for the fault tests: a deferred message waits in the queue until the test
#: flushes it (``postqueue -f``), so "it stays queued" is a state a test can look at, and a
#: retry happens when the test says, not when a timer does.
PATIENT = {
    "queue_run_delay": "300s",
    "minimal_backoff_time": "300s",
    "maximal_backoff_time": "300s",
}
BOUNCE_SUBJECT = "Undelivered Mail Returned to Sender"
_BIG_TEXT = (
    b"--feedgate-big\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nthe attachment is big\r\n"
)
_BIG_ATTACHMENT = (
    b"--feedgate-big\r\nContent-Type: application/octet-stream\r\n"
    b'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="big.bin"'
    b"\r\n\r\n"
)
_HEADERS = BytesHeaderParser(policy=policy.default)
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


# --- messages -----------------------------------------------------------------------------


def big_message(subject: str, size: int, *, seed: int = 13) -> bytes:
    """A message of exactly ``size`` bytes (CRLF lines): a short text part and a base64
    attachment of pseudo-random bytes, as a large real message is. Made in well under a second
    for 60 MB (one ``randbytes`` and one base64 pass)."""
    ident = f"<{subject.replace(' ', '.')}@client.test>"
    top = (
        "From: alice@example.org\r\nTo: bob@example.net\r\n"
        f"Subject: {subject}\r\nDate: {formatdate(usegmt=True)}\r\nMessage-ID: {ident}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="feedgate-big"\r\n\r\n'
    ).encode()
    after = b"--feedgate-big--\r\n"
    fixed = len(top) + len(_BIG_TEXT) + len(_BIG_ATTACHMENT) + len(after)
    # base64 lines of 76 characters + CRLF carry 57 bytes each; what is left over is one line of
    # filler in the text part (at least its CRLF).
    lines, rest = divmod(size - fixed, 78)
    if rest < 2:
        lines, rest = lines - 1, rest + 78
    data = random.Random(seed).randbytes(lines * 57)
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    filler = b"x" * (rest - 2) + b"\r\n"
    raw = top + _BIG_TEXT + filler + _BIG_ATTACHMENT + body + after
    assert len(raw) == size, (len(raw), size)
    return raw


def mail(subject: str, url_host: str | None = None) -> bytes:
    """:func:`milter_helpers.message` with a Date, so Postfix adds no header of its own below
    the sender's and a delivered message ends with exactly the bytes sent."""
    return message(subject, url_host, Date=formatdate(usegmt=True))


def message_id(raw: bytes) -> str:
    """The Message-ID of a message's own header block."""
    header = raw.split(b"\r\n\r\n", 1)[0]
    found = _MESSAGE_ID.search(header)
    assert found, "the message has no Message-ID"
    return found.group(1).decode()


def after_received(content: bytes) -> bytes:
    """The message as it was before Postfix prepended its ``Received:`` headers (each hop adds
    one, folded over several lines)."""
    rest = content
    while rest[:9].lower() == b"received:":
        end = rest.index(b"\r\n")
        while rest[end + 2 : end + 3] in (b" ", b"\t"):
            end = rest.index(b"\r\n", end + 2)
        rest = rest[end + 2 :]
    return rest


# --- the ledger ---------------------------------------------------------------------------


@dataclass
class Ledger:
    """Where each message is, by Message-ID: delivered (once per recipient-delivery), bounced
    to its sender, quarantined, still queued in Postfix."""

    delivered: Counter[str] = field(default_factory=Counter)
    recipients: Counter[tuple[str, str]] = field(default_factory=Counter)
    bounced: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    queued: Counter[str] = field(default_factory=Counter)
    unknown: list[str] = field(default_factory=list)

    def places(self, ident: str) -> list[str]:
        """Every place ``ident`` is, once per copy (a message is where one copy is)."""
        return sorted([place for place, counter in self._counters() for _ in range(counter[ident])])

    def _counters(self) -> list[tuple[str, Counter[str]]]:
        return [
            ("delivered", self.delivered),
            ("bounced", self.bounced),
            ("quarantined", self.quarantined),
            ("queued", self.queued),
        ]

    def assert_each_once(self, expected: dict[str, str]) -> None:
        """Every message of ``expected`` (Message-ID -> place) is in its place exactly once,
        and nothing else is anywhere (nothing lost, nothing doubled, nothing unaccounted)."""
        where = {ident: self.places(ident) for ident in expected}
        assert where == {ident: [place] for ident, place in expected.items()}
        others = {
            ident
            for _place, counter in self._counters()
            for ident in counter
            if ident not in expected
        }
        assert not others and not self.unknown, (others, self.unknown)


def ledger(postfix: Postfix, sink: Sink, db: Path) -> Ledger:
    """Count every message now: at the sink (a bounce counts for the message it returns), in
    the quarantine of ``db``, in Postfix's queue (its Message-ID read with ``postcat``)."""
    book = Ledger()
    for delivered in sink.messages:
        header, _, body = delivered.content.partition(b"\r\n\r\n")
        headers = _HEADERS.parsebytes(header + b"\r\n\r\n")  # not the body: it may be 60 MB
        if headers["Subject"] == BOUNCE_SUBJECT:
            returned = _MESSAGE_ID.search(body)
            if returned is None:
                book.unknown.append(f"a bounce naming no message: {header[:200]!r}")
                continue
            book.bounced[returned.group(1).decode()] += 1
            continue
        ident = headers["Message-ID"]
        if ident is None:
            book.unknown.append(f"a delivery without Message-ID: {header[:200]!r}")
            continue
        book.delivered[str(ident)] += 1
        for rcpt in delivered.rcpt_tos:
            book.recipients[(str(ident), rcpt)] += 1
    for kept in QuarantineStore(engine(str(db))).list():
        book.quarantined[kept.message_id or f"quarantine id {kept.id}"] += 1
    for queued in postfix.queued():
        ident = postfix.message_id(queued.queue_id)
        book.queued[ident or f"queue id {queued.queue_id}"] += 1
    return book


def queue_files(postfix: Postfix) -> list[Path]:
    """Every file in the instance's message queues, those still being written included
    (``postqueue`` does not show a message before its sender finished it)."""
    names = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")
    return [p for name in names for p in (postfix.queue / name).rglob("*") if p.is_file()]


def deferred(postfix: Postfix, count: int, *reason: str) -> list[Any]:
    """Wait until ``count`` messages are deferred in Postfix's queue, each for a reason that
    contains every text of ``reason``; the queue entries. (Postfix moves a message to
    ``deferred`` once the attempt failed, with the next hop's words as its reason.)"""

    def check() -> list[Any] | None:
        queued = postfix.queued()
        waiting = [
            q
            for q in queued
            if q.queue_name == "deferred" and all(any(r in x for x in q.reasons) for r in reason)
        ]
        return queued if len(waiting) == count == len(queued) else None

    try:
        return wait_for(f"{count} deferred messages ({', '.join(reason)})", check, 30.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the queue: {postfix.queued()}") from None


# --- the gateway as a process -------------------------------------------------------------


class GatewayProcess:
    """``feedgate gateway`` as Postfix's content filter, a real process (its workers are its
    children, spawned), started on ``port`` relaying to ``relay_port``; its mail log a file the
    test reads."""

    def __init__(
        self, db: Path, port: int, relay_port: int, *options: str, name: str = "gateway"
    ) -> None:
        self.db = db
        self.port = port
        self.relay_port = relay_port
        self.options = options
        self.mail_log = db.parent / f"{name}.mail.log"
        self.stderr_path = db.parent / f"{name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "XDG_DATA_HOME": str(self.db.parent / "xdg"),
        }
        with self.stderr_path.open("ab") as stderr:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "feedgate.cli", "gateway", "--db", str(self.db)),
                    *("--workers", "1", "--mail-log", str(self.mail_log)),
                    *("--listen", f"127.0.0.1:{self.port}"),
                    *("--relay", f"127.0.0.1:{self.relay_port}"),
                    *self.options,
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline().decode()
                if line.startswith("gateway:"):
                    return self
                if not line:
                    break
        self.kill()
        raise AssertionError(f"feedgate gateway did not start:\n{self.stderr()}")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def descendants(self) -> list[int]:
        """The pids of every process under the gateway (its workers, the resource tracker)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
        found: list[int] = []
        todo = [self.pid]
        while todo:
            parent = todo.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            found += children
            todo += children
        return found

    def workers(self) -> list[int]:
        """The scanning workers (spawned: ``multiprocessing.spawn`` in their command line)."""
        out = []
        for pid in self.descendants():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
        return out

    def kill_workers(self) -> list[int]:
        """SIGKILL the scanning workers and wait until they are gone; their pids."""
        pids = self.workers()
        assert pids, "the gateway has no scanning workers"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for("the killed workers to end", lambda: not any(alive(p) for p in pids))
        return pids

    def kill(self) -> None:
        """``kill -9`` of the gateway and everything under it, as a crash or the OOM killer
        would; returns once every one of them is gone."""
        if self.proc is None:
            return
        pids = [self.pid, *self.descendants()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(30)
        wait_for("the killed gateway's processes to end", lambda: not any(alive(p) for p in pids))
        self._close()

    def stop(self) -> None:
        """Stop it as an admin does (SIGINT), SIGKILL after a deadline."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def log_lines(self) -> list[dict[str, Any]]:
        """The mail log's lines (every message the gateway answered, all its runs)."""
        try:
            text = self.mail_log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- a TCP proxy the test controls --------------------------------------------------------


_WINDOW = 128 * 1024


class Proxy:
    """A TCP forwarder on a loopback port, in one of three states the test sets:

    - *down* (the start): the port is bound but not listening, so a connection is refused,
      as to a host whose server is not running;
    - *refusing*: every connection is greeted with ``greeting`` (e.g. ``421``) and closed, as
      by an MTA that will not take mail now;
    - *forwarding* to ``127.0.0.1:target``, counting the bytes each connection sent upstream;
      :meth:`hold_after` makes the next connection stop passing its client's bytes on after
      that many (the rest wait, the connection stays open) and sets :attr:`held`, so a test
      knows, without timing anything, that a transfer is under way and cannot complete.

    Either side closing closes both."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # A small receive window (the accepted sockets inherit it), not the kernel's autotuned
        # megabytes: a held client then really waits, its bytes not all swallowed by buffers.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _WINDOW)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._state = "down"
        self._greeting = b""
        self._lock = threading.Condition()
        self._hold_at: int | None = None
        self.held = threading.Event()
        #: What the upstream server sent on the held connection (its replies, e.g. 354).
        self.held_replies = b""
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._listening = False

    def refuse(self, greeting: bytes) -> None:
        with self._lock:
            self._state, self._greeting = "refusing", greeting
        self._listen()

    def forward(self) -> None:
        with self._lock:
            self._state = "forwarding"
        self._listen()

    def hold_after(self, count: int) -> None:
        with self._lock:
            self._hold_at = count
            self.held.clear()

    def release(self) -> None:
        with self._lock:
            self._hold_at = None
            self._lock.notify_all()

    def _listen(self) -> None:
        if self._listening:
            return
        self._listening = True
        self._listener.listen(16)
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                state, greeting = self._state, self._greeting
                self._sockets.append(client)
            if state == "refusing":
                with contextlib.suppress(OSError):
                    client.sendall(greeting)
                _shut(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            except OSError:
                _shut(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.append(upstream)
            link = _Link(client, upstream)
            self._spawn(self._up, link)
            self._spawn(self._down, link)

    def _up(self, link: _Link) -> None:
        """Client to upstream, holding when told to."""
        sent = 0
        try:
            while True:
                chunk = link.client.recv(65536)
                if not chunk:
                    break
                with self._lock:
                    hold_at = self._hold_at
                if hold_at is not None and sent + len(chunk) >= hold_at:
                    first, chunk = chunk[: hold_at - sent], chunk[hold_at - sent :]
                    link.upstream.sendall(first)
                    sent += len(first)
                    with self._lock:
                        self.held_replies = bytes(link.replies)
                        self.held.set()
                        while self._hold_at is not None and not link.closed:
                            self._lock.wait()
                    if link.closed:
                        break
                link.upstream.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        self._end(link)

    def _down(self, link: _Link) -> None:
        """Upstream to client, keeping the first replies (what state the server is in)."""
        try:
            while True:
                chunk = link.upstream.recv(65536)
                if not chunk:
                    break
                if len(link.replies) < 65536:
                    link.replies += chunk
                link.client.sendall(chunk)
        except OSError:
            pass
        self._end(link)

    def _end(self, link: _Link) -> None:
        with self._lock:
            link.closed = True
            self._lock.notify_all()
        _shut(link.client)
        _shut(link.upstream)

    def close(self) -> None:
        with self._lock:
            self._hold_at = None
            sockets = list(self._sockets)
            self._lock.notify_all()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        for sock in sockets:
            _shut(sock)
        for thread in self._threads:
            thread.join(10)


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    replies: bytearray = field(default_factory=bytearray)
    closed: bool = False


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()

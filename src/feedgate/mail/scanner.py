"""One message in, one verdict out: inspector, matcher and policy, wired once.

``feedgate scan`` and (next) the SMTP gateway and the milter all decide through
:meth:`Scanner.scan`, so a message gets the same verdict whichever face it passed. The scanner
keeps the matcher's snapshot, the policy and each source's false-positive gate switch in
memory and reads them again only when their counters move (the store's ``version`` for
observables and sources, ``policy_version`` for rules and exceptions), looking at the counters
at most every ``check_every`` seconds as the matcher does: a long-running gateway takes a new
poll, a disabled source, a new rule or exception within that time and without a restart, and a
scan pays no database round trip (a counter read costs about as much as inspecting a small
message) unless a digest hit needs its value checked.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from feedgate.feeds.store import FeedStore

from .inspect import inspect_message
from .mailindex import MailIndex
from .matcher import Matcher
from .policy import Policy, Verdict, evaluate
from .policy_store import PolicyStore

__all__ = ["Scanner"]


class Scanner:
    """Decides on messages against ``store``'s observables and ``policy``'s rules.

    ``log`` writes each verdict that matched anything to the match log (``feedgate hits``);
    ``now`` is the clock its rows are dated with. The policy's and the sources' counters are
    read at most every ``check_every`` seconds of ``clock`` (monotonic, injected for tests),
    the first scan always reads them. ``mail_index``: every message that passed (deliver,
    log, tag, header) is indexed there for the retro-scan (:mod:`feedgate.mail.retro`).
    Thread-safe: the pieces it holds are immutable and swapped whole.
    """

    def __init__(
        self,
        store: FeedStore,
        policy: PolicyStore,
        *,
        log: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        matcher: Matcher | None = None,
        clock: Callable[[], float] = time.monotonic,
        check_every: float = 1.0,
        mail_index: MailIndex | None = None,
    ) -> None:
        self.mail_index = mail_index
        self.store = store
        self.policy_store = policy
        self.log = log
        self._now = now
        self.matcher = matcher if matcher is not None else Matcher(store)
        self._lock = threading.Lock()
        self._policy: Policy | None = None
        self._gates: tuple[int, Mapping[str, bool], Mapping[str, str]] | None = None
        self._clock = clock
        self._check_every = check_every
        self._checked: float | None = None

    def _current(self) -> tuple[Policy, Mapping[str, bool], Mapping[str, str]]:
        """The policy and the sources' gate switches and modes, read again when their
        counters moved (looked at when ``check_every`` has passed since the last look)."""
        policy, gates = self._policy, self._gates
        now = self._clock()
        checked = self._checked
        if policy is None or gates is None or checked is None or now - checked >= self._check_every:
            if policy is None or self.policy_store.version() != policy.version:
                with self._lock:
                    policy = self._policy = self.policy_store.load()
            version = self.store.version()
            if gates is None or gates[0] != version:
                with self._lock:
                    switches = (version, self.store.fp_gates(), self.store.source_modes())
                    gates = self._gates = switches
            self._checked = now
        return policy, gates[1], gates[2]

    def scan(
        self,
        raw: bytes,
        *,
        message: str | None = None,
        client_ip: str | None = None,
        envelope_from: str | None = None,
    ) -> Verdict:
        """The verdict on ``raw`` (an RFC 5322 message), named ``message`` in the output and
        the match log (a path, ``-``, or a queue id). ``client_ip``/``envelope_from`` are the
        SMTP session's when there is one; for a file they are read from its headers."""
        inspection = inspect_message(raw, client_ip=client_ip, envelope_from=envelope_from)
        snapshot = self.matcher.snapshot()
        matches = snapshot.match(inspection.offers)
        policy, gates, modes = self._current()
        verdict = evaluate(matches, inspection, policy, fp_gates=gates, modes=modes)
        if message is not None:
            verdict = dataclasses.replace(verdict, message=message)
        if self.log and (
            verdict.matches or verdict.suppressed or verdict.excepted or verdict.monitored
        ):
            # The log counts messages by this id: without a Message-ID (or a name), each scan
            # is a message of its own.
            logged_id = inspection.message_id or message or f"<scan {uuid.uuid4().hex}>"
            self.policy_store.record(verdict, logged_id, self._now())
        if self.mail_index is not None:  # indexes only what passed
            self.mail_index.add(
                inspection,
                verdict,
                at=self._now(),
                version=snapshot.version,
                name=message,
                envelope_from=envelope_from,
                client_ip=client_ip,
            )
        return verdict

    def scan_file(self, path: Path, **kwargs: str | None) -> Verdict:
        """:meth:`scan` of the file at ``path`` (``OSError`` when it cannot be read)."""
        return self.scan(path.read_bytes(), message=str(path), **kwargs)

"""One message in, one verdict out: inspector, matcher and policy, wired once.

``feedgate scan`` and (next) the SMTP gateway and the milter all decide through
:meth:`Scanner.scan`, so a message gets the same verdict whichever face it passed. The scanner
keeps the matcher's snapshot, the policy and each source's false-positive gate switch in
memory and reads them again only when their counters move (the store's ``version`` for
observables and sources, ``policy_version`` for rules and exceptions): a long-running gateway
takes a new poll, a disabled source, a new rule or exception without a restart, and a scan
never pays a database round trip unless something changed or a digest hit needs its value
checked.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from feedgate.feeds.store import FeedStore

from .inspect import inspect_message
from .matcher import Matcher
from .policy import Policy, Verdict, evaluate
from .policy_store import PolicyStore

__all__ = ["Scanner"]


class Scanner:
    """Decides on messages against ``store``'s observables and ``policy``'s rules.

    ``log`` writes each verdict that matched anything to the match log (``feedgate hits``);
    ``now`` is the clock its rows are dated with. Thread-safe: the pieces it holds are immutable
    and swapped whole.
    """

    def __init__(
        self,
        store: FeedStore,
        policy: PolicyStore,
        *,
        log: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        matcher: Matcher | None = None,
    ) -> None:
        self.store = store
        self.policy_store = policy
        self.log = log
        self._now = now
        self.matcher = matcher if matcher is not None else Matcher(store)
        self._lock = threading.Lock()
        self._policy: Policy | None = None
        self._gates: tuple[int, Mapping[str, bool]] | None = None

    def _current_policy(self) -> Policy:
        policy = self._policy
        if policy is None or self.policy_store.version() != policy.version:
            with self._lock:
                policy = self._policy = self.policy_store.load()
        return policy

    def _fp_gates(self) -> Mapping[str, bool]:
        version = self.store.version()
        gates = self._gates
        if gates is None or gates[0] != version:
            with self._lock:
                gates = self._gates = (version, self.store.fp_gates())
        return gates[1]

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
        matches = self.matcher.snapshot().match(inspection.offers)
        verdict = evaluate(matches, inspection, self._current_policy(), fp_gates=self._fp_gates())
        if message is not None:
            verdict = dataclasses.replace(verdict, message=message)
        if self.log and (verdict.matches or verdict.suppressed or verdict.excepted):
            # The log counts messages by this id: without a Message-ID (or a name), each scan
            # is a message of its own.
            logged_id = inspection.message_id or message or f"<scan {uuid.uuid4().hex}>"
            self.policy_store.record(verdict, logged_id, self._now())
        return verdict

    def scan_file(self, path: Path, **kwargs: str | None) -> Verdict:
        """:meth:`scan` of the file at ``path`` (``OSError`` when it cannot be read)."""
        return self.scan(path.read_bytes(), message=str(path), **kwargs)

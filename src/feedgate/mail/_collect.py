"""Where the inspector's findings go: offers deduplicated, skips bounded, a byte budget.

One collector per message. Every extractor (headers, URLs, attachments, archives) writes here,
so the rules "same part, lookup and value once, the first ``seen`` kept" and "at most so many
skips listed" hold everywhere without each extractor knowing them.
"""

from __future__ import annotations

import hashlib
from typing import Final

from feedgate.mail import limits
from feedgate.mail.model import Inspection, Lookup, Offer, Part, Skipped

#: Skips listed per message; one hostile message could otherwise list a million.
MAX_SKIPPED: Final = 200


class Collector:
    """Offers and skips of one message, and the decoded bytes it may still spend."""

    __slots__ = ("_dropped_skips", "_offers", "_skipped", "budget")

    def __init__(self) -> None:
        self._offers: dict[tuple[Part, Lookup, str], Offer] = {}
        self._skipped: dict[tuple[str, str], Skipped] = {}
        self._dropped_skips = 0
        #: Decoded bytes (parts and archive members) the message may still have looked at.
        self.budget = limits.MAX_SCAN_BYTES

    def add(self, part: Part, lookup: Lookup, value: str, seen: str) -> None:
        """Offer ``value``, unless the same part and lookup already offer it."""
        key = (part, lookup, value)
        if key not in self._offers:
            self._offers[key] = Offer(part, lookup, value, seen)

    def has(self, part: Part, lookup: Lookup, value: str) -> bool:
        """Whether ``value`` is already offered for this part and lookup."""
        return (part, lookup, value) in self._offers

    def add_hashes(self, data: bytes, seen: str) -> None:
        """Offer the MD5, SHA-1 and SHA-256 of an attachment (or archive member) ``data``."""
        self.add_digests(
            hashlib.md5(data, usedforsecurity=False).hexdigest(),
            hashlib.sha1(data, usedforsecurity=False).hexdigest(),
            hashlib.sha256(data).hexdigest(),
            seen,
        )

    def add_digests(self, md5: str, sha1: str, sha256: str, seen: str) -> None:
        """Offer the three digests of an attachment already hashed (lower-case hex)."""
        self.add(Part.ATTACHMENT, Lookup.MD5, md5, seen)
        self.add(Part.ATTACHMENT, Lookup.SHA1, sha1, seen)
        self.add(Part.ATTACHMENT, Lookup.SHA256, sha256, seen)

    def skip(self, what: str, reason: str) -> None:
        """Report that ``what`` was not (fully) looked at, and why."""
        key = (what, reason)
        if key in self._skipped:
            return
        if len(self._skipped) >= MAX_SKIPPED:
            self._dropped_skips += 1
            return
        self._skipped[key] = Skipped(what, reason)

    def spend(self, size: int, what: str) -> bool:
        """Take ``size`` decoded bytes from the budget; False (and a skip) when it is spent."""
        if size > self.budget:
            self.skip(
                what,
                f"not decoded: the message's {limits.MAX_SCAN_BYTES // limits.MiB} MiB "
                "of decoded content have been looked at",
            )
            return False
        self.budget -= size
        return True

    def inspection(self, message_id: str | None, subject: str | None) -> Inspection:
        skipped = tuple(self._skipped.values())
        if self._dropped_skips:
            more = f"{self._dropped_skips} more skips not listed (limit {MAX_SKIPPED})"
            skipped += (Skipped("message", more),)
        return Inspection(tuple(self._offers.values()), skipped, message_id, subject)

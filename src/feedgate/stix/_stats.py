"""Counters a read fills in: what a feed held and what was left out, and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: How many example messages per skip reason are kept (enough to diagnose, never a flood).
_EXAMPLES_PER_REASON = 3


@dataclass
class ReadStats:
    """What one or more reads saw.

    ``by_kind`` counts emitted observables; ``skipped`` counts values left out, by reason (a
    pattern instead of a value, a value that failed normalisation, an unresolved idref, ...);
    ``examples`` keeps a few messages per reason.
    """

    packages: int = 0
    indicators: int = 0
    content_blocks: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def observables(self) -> int:
        return sum(self.by_kind.values())

    def skip(self, reason: str, example: str | None = None) -> None:
        self.skipped[reason] += 1
        if example is not None:
            kept = self.examples.setdefault(reason, [])
            if len(kept) < _EXAMPLES_PER_REASON:
                kept.append(example)

    def clear(self) -> None:
        """Forget everything counted so far."""
        self.packages = self.indicators = self.content_blocks = 0
        self.by_kind.clear()
        self.skipped.clear()
        self.examples.clear()

    def merge(self, other: ReadStats) -> None:
        self.packages += other.packages
        self.indicators += other.indicators
        self.content_blocks += other.content_blocks
        self.by_kind.update(other.by_kind)
        self.skipped.update(other.skipped)
        for reason, kept in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(kept[: _EXAMPLES_PER_REASON - len(mine)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "packages": self.packages,
            "indicators": self.indicators,
            "content_blocks": self.content_blocks,
            "observables": self.observables,
            "by_kind": {str(k): v for k, v in sorted(self.by_kind.items())},
            "skipped": dict(sorted(self.skipped.items())),
        }

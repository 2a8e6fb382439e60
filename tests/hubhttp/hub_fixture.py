"""The seeded hub the hub's TAXII tests run against (served by the fixture in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from feedgate.hub.store import HubStore

PULSES = 12
PER_PULSE = 5


@dataclass
class Hub:
    url: str
    host: str
    port: int
    store: HubStore
    api_key: str
    author: str = "AlienVault"

    @property
    def collection(self) -> str:
        return f"user_{self.author}"

    def visible(self) -> int:
        """How many of the author's pulses the fixture's user (who authors none) may see over
        TAXII and REST alike: the public ones, counted from the data."""
        return sum(e.pulse.public for e in self.store.pulses_page(self.author, limit=10_000))

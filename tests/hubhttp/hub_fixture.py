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

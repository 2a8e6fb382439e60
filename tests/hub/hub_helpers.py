"""Shared helpers for the hub tests: stores on temporary SQLite files and small pulses."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from feedgate.db import engine
from feedgate.hub.model import Indicator, Pulse
from feedgate.hub.store import HubStore

DATA = Path(__file__).resolve().parent.parent / "data"
T0 = datetime(2016, 11, 3, 20, 15, 43, 264000)


def open_store(path: Path) -> HubStore:
    return HubStore(engine(str(path)))


def make_pulse(
    n: int,
    *,
    author: str = "AlienVault",
    modified: datetime | None = None,
    indicators: int = 2,
    name: str | None = None,
) -> Pulse:
    """Pulse number ``n``: id ``n`` in 24 hex digits, ``indicators`` IPv4/domain indicators."""
    created = T0 + timedelta(hours=n)
    inds = tuple(
        Indicator(
            indicator=f"192.0.2.{k + 1}" if k % 2 == 0 else f"host{n}-{k}.example",
            type="IPv4" if k % 2 == 0 else "domain",
            created=created,
            expiration=created + timedelta(days=30) if k % 2 == 0 else None,
        )
        for k in range(indicators)
    )
    return Pulse(
        id=f"{n:024x}",
        name=name or f"Emotet C2 infrastructure {n}",
        author_name=author,
        created=created,
        modified=modified or created,
        tags=("emotet", "c2"),
        indicators=inds,
    )

"""Packages are rendered once per pulse revision, and again when an indicator in them expires."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

from feedgate import db
from feedgate.hub.feed import StoreFeed
from feedgate.hub.model import Indicator, Pulse
from feedgate.hub.store import HubStore

T0 = datetime(2026, 11, 1, 12, 0, 0)


def _pulse() -> Pulse:
    return Pulse(
        id="a" * 24,
        name="First name",
        author_name="acme",
        created=T0,
        modified=T0,
        indicators=(
            Indicator(
                indicator="192.0.2.7", type="IPv4", created=T0, expiration=T0 + timedelta(days=1)
            ),
            Indicator(indicator="evil.example", type="domain", created=T0),
        ),
    )


def test_render_once_then_again_on_update_and_on_expiry(tmp_path: Path) -> None:
    clock = [T0 + timedelta(hours=1)]
    store = HubStore(db.engine(str(tmp_path / "hub.db")), now=lambda: clock[0])
    store.add_pulse(_pulse())
    feed = StoreFeed(store, now=lambda: clock[0])
    end = T0 + timedelta(days=30)

    def package() -> bytes:
        entries = feed.page("acme", "acme", None, end, store.max_seq(), None, 10)
        assert len(entries) == 1
        return entries[0].package

    first = package()
    assert b"192.0.2.7" in first and b"First name" in first
    assert store.rendered_packages(["a" * 24])["a" * 24][2] == first  # kept in the store
    assert package() == first  # served from the store, not rendered again

    clock[0] = T0 + timedelta(days=2)  # the IPv4 indicator has expired
    expired = package()
    assert b"192.0.2.7" not in expired and b"evil.example" in expired

    store.update_pulse(
        dataclasses.replace(store.get_pulse("a" * 24) or _pulse(), name="Second name")
    )
    assert b"Second name" in package()

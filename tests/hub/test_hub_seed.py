"""feedgate.hub.seed: deterministic, realistic, harmless demo pulses."""

from __future__ import annotations

import ipaddress
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hub_helpers import open_store

from feedgate.hub.model import INDICATOR_TYPES, pulse_to_otx
from feedgate.hub.seed import generate, seed
from feedgate.hub.store import HubError

UNTIL = datetime(2026, 6, 1)
DOC_V4 = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
DOC_V6 = ipaddress.ip_network("2001:db8::/32")
RESERVED = (".example", ".test", ".invalid")


def test_deterministic() -> None:
    one = [pulse_to_otx(p) for p in generate(20, 10, seed=3, until=UNTIL)]
    two = [pulse_to_otx(p) for p in generate(20, 10, seed=3, until=UNTIL)]
    assert one == two
    assert one != [pulse_to_otx(p) for p in generate(20, 10, seed=4, until=UNTIL)]
    other = [p.id for p in generate(20, 10, seed=3, author="Bob", until=UNTIL)]
    assert not set(other) & {p["id"] for p in one}


def test_no_public_pulse_is_tlp_amber_or_red() -> None:
    """OTX refuses a public amber or red pulse (so does the hub's REST API): the seed, which
    draws every TLP, makes those private, and still makes some other pulses private too."""
    pulses = list(generate(400, 1, seed=5, until=UNTIL))
    assert {p.tlp for p in pulses} == {"white", "green", "amber", "red"}
    assert not [p.id for p in pulses if p.public and p.tlp in ("amber", "red")]
    assert any(not p.public and p.tlp in ("white", "green") for p in pulses)
    assert any(p.public for p in pulses)


def test_every_type_and_only_harmless_values() -> None:
    pulses = list(generate(200, 20, seed=1, until=UNTIL))
    indicators = [i for p in pulses for i in p.indicators]
    kinds = Counter(i.type for i in indicators)
    assert set(kinds) == set(INDICATOR_TYPES)
    assert kinds.most_common(1)[0][0] == "IPv4"
    for p in pulses:
        assert len(p.indicators) == 20
        assert len({(i.type, i.indicator) for i in p.indicators}) == 20
        assert UNTIL - timedelta(days=181) <= p.created <= p.modified <= UNTIL
        assert p.tlp in ("white", "green", "amber", "red")
        assert p.tags and p.malware_families and p.name
        for ref in p.references:
            assert (urlsplit(ref).hostname or "").endswith(RESERVED)
    for ind in indicators:
        value = ind.indicator
        if ind.type == "IPv4":
            assert any(ipaddress.ip_address(value) in net for net in DOC_V4)
            assert ind.expiration == ind.created + timedelta(days=30)
        elif ind.type == "IPv6":
            assert ipaddress.ip_address(value) in DOC_V6
        elif ind.type == "CIDR":
            assert any(ipaddress.ip_network(value).subnet_of(net) for net in DOC_V4)
        elif ind.type in ("domain", "hostname"):
            assert value.endswith(RESERVED)
        elif ind.type == "email":
            assert value.split("@")[1].endswith(RESERVED)
        elif ind.type in ("URL", "URI"):
            assert (urlsplit(value).hostname or "").endswith(RESERVED)
        if ind.type in ("domain", "email"):
            assert ind.expiration is None
    inactive = sum(not i.is_active for i in indicators)
    assert 0 < inactive < len(indicators) * 0.03
    months = {p.created.strftime("%Y-%m") for p in pulses}
    assert len(months) >= 5
    assert any("C2 infrastructure" in p.name for p in pulses)
    assert len({p.tlp for p in pulses}) == 4


def test_seed_into_store(tmp_path: Path) -> None:
    store = open_store(tmp_path / "hub.db")
    result = seed(store, pulses=30, indicators_per_pulse=5, seed=7, until=UNTIL)
    assert (result.pulses, result.indicators) == (30, 150)
    assert store.stats() == {"users": 1, "pulses": 30, "indicators": 150}
    assert store.default_author() == "AlienVault"
    first = next(generate(30, 5, seed=7, until=UNTIL))
    stored = store.get_pulse(first.id)
    assert stored is not None and stored.name == first.name
    entries = store.pulses_page("AlienVault", limit=100)
    assert [e.label for e in entries] == sorted({e.label for e in entries})
    with pytest.raises(HubError, match="already exists"):
        seed(store, pulses=30, indicators_per_pulse=5, seed=7, until=UNTIL)
    seed(store, pulses=3, indicators_per_pulse=2, author="Bob", seed=7, until=UNTIL)
    assert store.default_author() == "AlienVault"
    assert store.authors() == ["AlienVault", "Bob"]

"""The STIX 2.1 bundle writer: a bundle written from pieces is one JSON document, and reading
it back with feedgate's own STIX 2 reader gives the values back, for every kind with a
pattern; escaping and the STIX 2.1 rules on times hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from feedgate.observables import Kind
from feedgate.stix import read_observables
from feedgate.stix.bundle21 import Indicator, bundle_chunks, indicator_object, pattern

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)

VALUES = {
    Kind.IPV4: "198.51.100.7",
    Kind.IPV6: "2001:db8::1",
    Kind.CIDR: "203.0.113.0/24",
    Kind.DOMAIN: "evil.example",
    Kind.URL: "http://evil.example/a?b='c'\\d",
    Kind.EMAIL: "bad@evil.example",
    Kind.MD5: "d41d8cd98f00b204e9800998ecf8427e",
    Kind.SHA1: "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    Kind.SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
}


def item(kind: Kind, value: str, **context: object) -> Indicator:
    return Indicator("otx", kind, value, T0, T0 + timedelta(hours=1), None, context)


def test_a_bundle_reads_back_to_its_values() -> None:
    items = [item(k, v, package_title="Campaign <x>") for k, v in VALUES.items()]
    items.append(item(Kind.OTHER, "Global\\mutex"))  # no pattern: left out
    text = "".join(bundle_chunks(items, bundle_id="bundle--0b5a1a3e-0000-4000-8000-000000000001"))
    document = json.loads(text)
    assert document["type"] == "bundle" and len(document["objects"]) == len(VALUES)
    read = {(o.kind, o.value) for o in read_observables(text.encode())}
    assert {(str(k), v) for k, v in VALUES.items()} <= {(str(k), v) for k, v in read}
    first = document["objects"][0]
    assert first["spec_version"] == "2.1" and first["pattern_type"] == "stix"
    assert first["name"] == "Campaign <x>" and first["valid_from"] == "2024-03-01T12:00:00.123Z"
    assert first["modified"] == "2024-03-01T13:00:00.123Z"


def test_patterns_escape_quotes_and_ids_are_stable() -> None:
    assert pattern("url", "a'b\\c") == "[url:value = 'a\\'b\\\\c']"
    assert pattern("cidr", "2001:db8::/32") == "[ipv6-addr:value = '2001:db8::/32']"
    assert pattern("sha1", "x") == "[file:hashes.'SHA-1' = 'x']"
    assert pattern("other", "m") is None and pattern("nonsense", "m") is None
    one = indicator_object(item(Kind.IPV4, "192.0.2.1"))
    again = indicator_object(item(Kind.IPV4, "192.0.2.1"))
    assert one is not None and again is not None and one["id"] == again["id"]
    assert one["id"].startswith("indicator--") and one["name"] == "ipv4 192.0.2.1"


def test_valid_until_is_kept_only_after_valid_from() -> None:
    later = Indicator("otx", "ipv4", "192.0.2.1", T0, T0, T0 + timedelta(days=1), {})
    earlier = Indicator("otx", "ipv4", "192.0.2.1", T0, T0, T0 - timedelta(days=1), {})
    kept, dropped = indicator_object(later), indicator_object(earlier)
    assert kept is not None and kept["valid_until"] == "2024-03-02T12:00:00.123Z"
    assert dropped is not None and "valid_until" not in dropped


def test_an_empty_bundle_is_valid_json() -> None:
    assert json.loads("".join(bundle_chunks([])))["objects"] == []

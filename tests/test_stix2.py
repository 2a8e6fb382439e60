"""The STIX 2.1 reader: simple patterns become values, everything else is skipped with a reason."""

from __future__ import annotations

import json

import pytest

from feedgate.stix import ReadStats, pattern_comparisons, read_observables
from stix_helpers import DATA, pairs, read

STIX2 = DATA / "stix2"


def read_sample(name: str) -> tuple[list[tuple[str, str]], ReadStats]:
    stats = ReadStats()
    return pairs(list(read_observables(STIX2 / name, stats=stats))), stats


def test_single_comparison() -> None:
    found, _ = read_sample("oasis-schemas_indicator-for-c2-ip-address.json")
    assert found == [("ipv4", "10.0.0.0")]


def test_hash_with_quoted_algorithm() -> None:
    found, _ = read_sample("oasis-schemas_indicators-for-C2-with-COA.json")
    assert found == [
        ("ipv4", "10.0.0.0"),
        ("sha256", "ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c"),
    ]


def test_matches_patterns_are_skipped_with_reason() -> None:
    found, stats = read_sample("oasis-schemas_malicious-email-indicator-with-attachment.json")
    assert found == []
    assert stats.indicators == 2
    assert sum(stats.skipped.values()) == 2
    assert any("MATCHES" in reason for reason in stats.skipped)


def test_cidr_values_and_and_patterns_in_apt1() -> None:
    found, stats = read_sample("oasis-schemas_threat-report_apt1.json")
    assert ("cidr", "223.166.0.0/15") in found
    assert ("domain", "hugesoft.org") in found
    assert stats.skipped["indicator pattern not a list of values: pattern uses AND"] == 2


def test_compound_or_across_observation_expressions() -> None:
    found, _ = read_sample("oasis-schemas_threat-report_poisonivy.json")
    assert ("domain", "www.webserver.dynssl.com") in found
    assert ("ipv4", "113.10.246.30") in found


def test_scos_in_a_plain_json_array() -> None:
    found, _ = read_sample("cti-python-stix2_sco-examples-bundle.json")
    kinds = {k for k, _ in found}
    assert {"ipv4", "ipv6", "domain", "email", "md5", "sha1", "sha256", "cidr"} <= kinds


def test_every_stix2_sample_reads() -> None:
    for path in sorted(STIX2.glob("*.json")):
        list(read_observables(path))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("[ipv4-addr:value = '192.0.2.1']", [("ipv4-addr:value", "192.0.2.1")]),
        (
            "[domain-name:value = 'a.example' OR domain-name:value = 'b.example']",
            [("domain-name:value", "a.example"), ("domain-name:value", "b.example")],
        ),
        (
            "[url:value = 'http://x.example/'] OR [email-addr:value = 'm@x.example']",
            [("url:value", "http://x.example/"), ("email-addr:value", "m@x.example")],
        ),
        (
            "[file:hashes.'SHA-256' = 'aa']",
            [("file:hashes.'SHA-256'", "aa")],
        ),
        (
            "[ipv4-addr:value IN ('192.0.2.1', '192.0.2.2')]",
            [("ipv4-addr:value", "192.0.2.1"), ("ipv4-addr:value", "192.0.2.2")],
        ),
        ("[url:value = 'http://x.example/it\\'s']", [("url:value", "http://x.example/it's")]),
    ],
)
def test_pattern_comparisons(pattern: str, expected: list[tuple[str, str]]) -> None:
    assert pattern_comparisons(pattern) == expected


@pytest.mark.parametrize(
    "pattern",
    [
        "[ipv4-addr:value = '192.0.2.1' AND ipv4-addr:value = '192.0.2.2']",
        "[ipv4-addr:value != '192.0.2.1']",
        "[domain-name:value MATCHES '^evil']",
        "[domain-name:value LIKE 'evil%']",
        "[ipv4-addr:value = '192.0.2.1'] WITHIN 60 SECONDS",
        "[ipv4-addr:value = '192.0.2.1'] FOLLOWEDBY [ipv4-addr:value = '192.0.2.2']",
        "[ipv4-addr:value = '192.0.2.1'] REPEATS 5 TIMES",
        "[ipv4-addr:value = '192.0.2.1'",
        "",
        "[ipv4-addr:value = 5]",
    ],
)
def test_unsupported_patterns_are_refused(pattern: str) -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--1",
        "objects": [
            {"type": "indicator", "id": "indicator--1", "pattern": pattern, "pattern_type": "stix"}
        ],
    }
    found, stats = read(json.dumps(bundle))
    assert found == []
    assert sum(stats.skipped.values()) == 1


def test_non_stix_pattern_types_are_skipped() -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--1",
        "objects": [
            {
                "type": "indicator",
                "id": "indicator--1",
                "pattern": "alert tcp any any",
                "pattern_type": "snort",
            }
        ],
    }
    found, stats = read(json.dumps(bundle))
    assert found == [] and stats.skipped["indicator pattern type snort (not stix)"] == 1


def test_indicator_context() -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--9",
        "objects": [
            {
                "type": "indicator",
                "id": "indicator--7",
                "name": "C2",
                "description": "why",
                "pattern": "[url:value = 'HTTP://Evil.Example:80/p']",
                "pattern_type": "stix",
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_until": "2026-02-01T00:00:00Z",
                "indicator_types": ["malicious-activity"],
                "confidence": 80,
            }
        ],
    }
    found, _ = read(json.dumps(bundle))
    assert pairs(found) == [("url", "http://evil.example/p")]
    ctx = found[0].context
    assert ctx["indicator_id"] == "indicator--7"
    assert ctx["indicator_title"] == "C2"
    assert ctx["valid_until"] == "2026-02-01T00:00:00Z"
    assert ctx["indicator_type"] == "malicious-activity"
    assert ctx["package_id"] == "bundle--9"


def test_invalid_json_is_a_clear_error() -> None:
    from feedgate.stix import StixReadError

    with pytest.raises(StixReadError, match="not valid JSON"):
        read('{"type": "bundle", ')

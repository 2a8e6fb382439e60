"""Fuzz the readers: whatever the bytes, the only failures are the documented one-line errors.

Inputs are real samples cut, spliced and mutated by hypothesis, plus arbitrary bytes and JSON.
"""

from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedgate.stix import ReadStats, StixReadError, read_observables
from feedgate.xml import XMLParseError
from stix_helpers import DATA

SAMPLES = [p.read_bytes() for p in sorted((DATA / "stix1").glob("*.xml"))]
JSON_SAMPLES = [p.read_bytes() for p in sorted((DATA / "stix2").glob("*.json"))]

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_all(data: bytes) -> None:
    stats = ReadStats()
    try:
        for obs in read_observables(io.BytesIO(data), stats=stats):
            assert obs.value
            assert obs.value == obs.value.strip()
    except (StixReadError, XMLParseError) as exc:
        message = str(exc)
        assert message and "\n" not in message.strip()


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    _read_all(data)


@FUZZ
@given(
    st.sampled_from(SAMPLES),
    st.integers(min_value=0, max_value=20_000),
    st.integers(min_value=0, max_value=20_000),
    st.binary(max_size=64),
)
def test_mutated_stix1_samples(sample: bytes, start: int, length: int, junk: bytes) -> None:
    start %= max(1, len(sample))
    _read_all(sample[:start] + junk + sample[start + length :])


@FUZZ
@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=4), st.sampled_from([b"", b"\n"]))
def test_concatenated_samples(parts: list[bytes], separator: bytes) -> None:
    _read_all(separator.join(parts))


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    st.sampled_from(
        ["indicator", "ipv4-addr", "domain-name", "file", "url", "email-addr", "bundle"]
    ),
    st.dictionaries(
        st.sampled_from(["pattern", "value", "hashes", "pattern_type", "objects", "name"]),
        _JSON_VALUES,
    ),
)
def test_stix2_objects_with_arbitrary_fields(obj_type: str, fields: dict[str, object]) -> None:
    _read_all(json.dumps({"type": "bundle", "objects": [{**fields, "type": obj_type}]}).encode())


@FUZZ
@given(st.sampled_from(JSON_SAMPLES), st.integers(min_value=0, max_value=90_000))
def test_truncated_stix2(sample: bytes, cut: int) -> None:
    _read_all(sample[: cut % max(1, len(sample))])

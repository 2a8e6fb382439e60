"""feedgate.hub.model: OTX JSON round trips, field errors, usability."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from hub_helpers import DATA, T0, make_pulse

from feedgate.hub.model import (
    INDICATOR_TYPES,
    Indicator,
    OTXFormatError,
    format_time,
    indicator_from_otx,
    parse_time,
    pulse_from_otx,
    pulse_to_otx,
)


def test_indicator_types_are_otx_spelling() -> None:
    assert len(INDICATOR_TYPES) == 21
    for name in ("IPv4", "domain", "URL", "FileHash-SHA256", "osquery", "BitcoinAddress"):
        assert name in INDICATOR_TYPES


def test_timestamp_format_is_exact() -> None:
    assert format_time(T0) == "2016-11-03T20:15:43.264000"
    assert format_time(datetime(2020, 1, 2, 3, 4, 5)) == "2020-01-02T03:04:05.000000"
    assert parse_time("2016-11-03T20:15:43.264000") == T0
    assert parse_time("2016-11-03T20:15:43") == datetime(2016, 11, 3, 20, 15, 43)
    assert parse_time("2016-11-03T21:15:43.264Z") == T0 + timedelta(hours=1)
    assert parse_time("2016-11-03T22:15:43.264+02:00") == T0


def test_otx_json_round_trip() -> None:
    pulse = make_pulse(7, indicators=4)
    pulse = pulse.__class__(
        **{
            **{f: getattr(pulse, f) for f in pulse.__dataclass_fields__},
            "indicators": tuple(
                Indicator(**{**{f: getattr(i, f) for f in i.__dataclass_fields__}, "id": 100 + k})
                for k, i in enumerate(pulse.indicators)
            ),
            "adversary": "TA542",
            "references": ("https://research.example/r/1",),
            "tlp": "amber",
        }
    )
    data = pulse_to_otx(pulse)
    assert data["created"] == "2016-11-04T03:15:43.264000"
    assert data["tlp"] == "amber" and "TLP" not in data
    assert data["public"] == 1
    assert data["indicators"][0]["is_active"] == 1
    assert data["indicators"][0]["expiration"] == "2016-12-04T03:15:43.264000"
    assert data["indicators"][1]["expiration"] is None
    assert list(data)[:5] == ["id", "name", "description", "author_name", "created"]
    again = pulse_from_otx(json.loads(json.dumps(data)))
    assert again == pulse
    detail = pulse_to_otx(pulse, detail=True)
    assert detail["TLP"] == "amber" and "tlp" not in detail
    assert pulse_from_otx(detail) == pulse


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "xyz"}, "id: expected 24 lower-case hex digits"),
        ({"name": None}, "name: missing"),
        ({"name": 5}, "name: expected a string, got int"),
        ({"tlp": "purple"}, "tlp: expected one of white, green, amber, red"),
        ({"modified": "yesterday"}, "modified: not an ISO 8601 timestamp"),
        ({"tags": "a,b"}, "tags: expected a list of strings"),
        ({"tags": ["a", 3]}, "tags[1]: expected a string, got int"),
        ({"public": "yes"}, "public: expected true/false or 0/1"),
        ({"indicators": {}}, "indicators: expected a list"),
    ],
)
def test_field_errors_name_the_field(change: dict[str, object], message: str) -> None:
    data = pulse_to_otx(make_pulse(1))
    data.update(change)
    with pytest.raises(OTXFormatError) as info:
        pulse_from_otx(data)
    assert str(info.value).startswith(message)


def test_indicator_errors_name_the_position() -> None:
    data = pulse_to_otx(make_pulse(1, indicators=3))
    data["indicators"][2]["type"] = "Foo"
    with pytest.raises(OTXFormatError, match=r"^indicators\[2\]\.type: unknown indicator type"):
        pulse_from_otx(data)
    data["indicators"][2] = "1.2.3.4"
    with pytest.raises(OTXFormatError, match=r"^indicators\[2\]: expected an object"):
        pulse_from_otx(data)
    with pytest.raises(OTXFormatError, match=r"^\[4\]\.name: missing"):
        pulse_from_otx({"id": "0" * 24}, where="[4]")


def test_minimal_pulse_gets_defaults_and_lenient_types() -> None:
    pulse = pulse_from_otx(
        {
            "id": "5f0e7c2b9a1d3e4f5a6b7c8d",
            "name": "n",
            "author_name": "a",
            "created": "2020-01-01T00:00:00",
            "attack_ids": [{"id": "T1566.001", "name": "Spearphishing Attachment"}],
            "indicators": [{"indicator": "bad.example", "type": "Domain"}],
        }
    )
    assert pulse.modified == pulse.created == datetime(2020, 1, 1)
    assert pulse.tlp == "white" and pulse.revision == 1 and pulse.public
    assert pulse.attack_ids == ("T1566.001",)
    assert pulse.indicators[0].type == "domain"
    assert pulse.indicators[0].id is None
    assert pulse.indicators[0].created == pulse.created


def test_sdk_sample_indicators_parse() -> None:
    """The OTX SDK's own example writes the type as "Domain"."""
    items = json.loads((DATA / "otx" / "otx-python-sdk_update_pulse.json").read_text())
    parsed = [indicator_from_otx(item) for item in items]
    assert [(i.type, i.indicator) for i in parsed] == [
        ("domain", "two.com"),
        ("domain", "three.com"),
        ("domain", "four.com"),
    ]


def test_usable_means_active_and_unexpired() -> None:
    now = datetime(2024, 5, 1)
    fresh = Indicator("192.0.2.1", "IPv4", now, expiration=now + timedelta(days=1))
    assert fresh.usable(now)
    assert not fresh.usable(now + timedelta(days=1))  # expiry instant is already unusable
    assert Indicator("a.example", "domain", now).usable(now + timedelta(days=9999))
    assert not Indicator("a.example", "domain", now, is_active=False).usable(now)
    pulse = make_pulse(1, indicators=2)
    late = pulse.created + timedelta(days=31)
    assert [i.type for i in pulse.usable_indicators(late)] == ["domain"]

"""A pushed STIX package becomes a pulse of the pusher; pushing it again updates that pulse."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedgate.hub.publish import pulse_from_package

DATA = Path(__file__).resolve().parent.parent / "data"


def test_a_package_becomes_a_pulse_with_otx_types() -> None:
    package = (DATA / "stix1" / "stixproject-analyst-exercise_output.xml").read_bytes()
    pulse = pulse_from_package(package, "acme")
    assert pulse.author_name == "acme"
    types = {(i.type, i.indicator) for i in pulse.indicators}
    assert ("email", "invite@aeroconf2014.org") in types
    assert ("hostname", "yahoomail.com.co") in types
    assert ("IPv4", "81.17.28.227") in types
    assert ("FileHash-MD5", "6dc7cc33a3cdcfee6c4edb6c085b869d") in types
    assert len(types) == len(pulse.indicators)  # the IP listed twice is one indicator
    assert pulse_from_package(package, "acme").id == pulse.id  # a re-push updates
    assert pulse_from_package(package, "other").id != pulse.id


def test_what_cannot_be_a_pulse_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not a STIX 1\.x package"):
        pulse_from_package(b'{"type": "bundle", "objects": []}', "acme")
    snort = (DATA / "stix1" / "stixproject-idiom_snort-test-mechanism.xml").read_bytes()
    with pytest.raises(ValueError, match="no indicator"):
        pulse_from_package(snort, "acme")

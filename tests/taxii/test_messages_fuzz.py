"""Fuzzing the message parsers: whatever a peer sends, the only errors are ours.

Real messages are damaged at random (a value replaced, an element or attribute dropped, bytes
cut off or flipped); ``parse`` and the streaming reader must then either succeed or raise
TAXIIMessageError / XMLParseError, never anything else (a KeyError or OverflowError from deep
inside would escape a client's error handling).
"""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from taxii_helpers import DATA

from feedgate.taxii import messages as tm
from feedgate.xml import XMLParseError

SAMPLES = [
    p.read_bytes()
    for p in sorted(DATA.rglob("*.xml"))
    if not p.name.startswith("Doctype_") and not p.name.startswith("08_")
]
NASTY_VALUES = [
    "",
    " ",
    "-1",
    "0",
    "+7",
    "9" * 40,
    "true",
    "maybe",
    "2014-13-45T99:99:99Z",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59+14:00",
    "<x/>",
    "é",
]

FUZZ_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def damaged_messages(draw: st.DrawFn) -> bytes:
    root = etree.fromstring(draw(st.sampled_from(SAMPLES)))
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(elements))
        value = draw(st.sampled_from(NASTY_VALUES) | st.text(max_size=10).filter(_xml_safe))
        action = draw(st.sampled_from(["text", "attribute", "drop-attribute", "drop", "rename"]))
        if action == "text":
            target.text = value
        elif action == "attribute" and target.attrib:
            target.set(draw(st.sampled_from(sorted(target.attrib))), value)
        elif action == "drop-attribute" and target.attrib:
            del target.attrib[draw(st.sampled_from(sorted(target.attrib)))]
        elif action == "drop" and (parent := target.getparent()) is not None:
            parent.remove(target)
            elements = [e for e in root.iter() if isinstance(e.tag, str)]
        elif action == "rename":
            target.tag = etree.QName(etree.QName(target).namespace, "Unexpected").text
    return etree.tostring(root)


def _xml_safe(text: str) -> bool:
    return all(c in "\t\n\r" or " " <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" for c in text)


def _read_everything(data: bytes) -> None:
    try:
        msg = tm.parse(data)
        msg.to_xml()
    except (tm.TAXIIMessageError, XMLParseError):
        pass
    try:
        result = tm.iter_poll_response(io.BytesIO(data))
        if isinstance(result, tm.PollResponseReader):
            for _ in result:
                pass
            _ = result.header
    except (tm.TAXIIMessageError, XMLParseError):
        pass


@FUZZ_SETTINGS
@given(damaged_messages())
def test_damaged_messages_raise_only_our_errors(data: bytes) -> None:
    _read_everything(data)


@FUZZ_SETTINGS
@given(st.sampled_from(SAMPLES), st.integers(0, 10_000), st.binary(max_size=4))
def test_cut_and_spliced_bytes_raise_only_our_errors(sample: bytes, at: int, junk: bytes) -> None:
    at %= len(sample) + 1
    _read_everything(sample[:at])
    _read_everything(sample[:at] + junk + sample[at:])

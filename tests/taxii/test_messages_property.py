"""Property tests: generated Poll_Response, Status_Message and Inbox_Message round-trip.

For every generated message of either version: ``parse(to_xml(m))`` equals ``m`` (XML payloads
as trees), the XML is valid against the TAXII schema, and for poll responses the streamed
chunks join to ``to_xml()`` and the stream reader gives the same header and blocks.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from taxii_helpers import V10, V11, assert_schema_valid, canonical

from feedgate.taxii import messages as tm

# --- values -----------------------------------------------------------------------------------

#: Characters XML 1.0 can carry (no surrogates, no C0 controls but tab, newline, return).
xml_chars = st.characters(
    blacklist_categories=["Cs"],
    blacklist_characters=[chr(c) for c in range(32) if chr(c) not in "\t\n\r"]
    + ["\ufffe", "\uffff"],
)
free_text = st.text(xml_chars, max_size=40)
#: Identifiers (xs:anyURI, which libxml2 checks): relative references or URNs, without the
#: surrounding whitespace the reader collapses.
_segments = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~é"),
    min_size=1,
    max_size=12,
)
identifiers = (
    _segments
    | st.lists(_segments, min_size=2, max_size=4).map(lambda parts: "urn:" + ":".join(parts))
    | st.lists(_segments, min_size=2, max_size=3).map("/".join)
)
digits = st.integers(min_value=0, max_value=10**12).map(str)  # TAXII 1.0 message ids
offsets = st.integers(min_value=-14 * 3600, max_value=14 * 3600).map(
    lambda s: timezone(timedelta(seconds=s))
)
timestamps = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets
)
maybe_timestamp = st.none() | timestamps

names = st.text(st.sampled_from("abcdefgxyz"), min_size=1, max_size=6)


@st.composite
def xml_documents(draw: st.DrawFn) -> bytes:
    """Small XML documents: nested elements with attributes, text and namespaces."""

    def element(depth: int) -> etree._Element:
        ns = draw(st.sampled_from([None, "urn:a", "http://stix.mitre.org/stix-1"]))
        tag = draw(names)
        elem = etree.Element(f"{{{ns}}}{tag}" if ns else tag)
        for key in draw(st.lists(names, max_size=3, unique=True)):
            elem.set(key, draw(free_text))
        elem.text = draw(st.none() | free_text)
        if depth < 3:
            for _ in range(draw(st.integers(0, 3))):
                child = element(depth + 1)
                child.tail = draw(st.none() | free_text)
                elem.append(child)
        return elem

    return etree.tostring(element(0), encoding="utf-8")


contents = st.one_of(free_text.map(str.encode), xml_documents(), free_text)


def content_blocks(version: str) -> st.SearchStrategy[tm.ContentBlock]:
    v11 = version == V11
    return st.builds(
        tm.ContentBlock,
        content_binding=st.builds(
            tm.ContentBinding,
            binding_id=identifiers,
            subtypes=st.lists(identifiers, max_size=1 if v11 else 0).map(tuple),
        ),
        content=contents,
        timestamp_label=maybe_timestamp,
        message=st.none() | free_text if v11 else st.none(),
        padding=st.none() | free_text,
    )


def message_ids(version: str) -> st.SearchStrategy[str]:
    return identifiers if version == V11 else digits


extended_headers = st.lists(
    st.builds(tm.ExtendedHeader, name=identifiers, value=free_text), max_size=2
).map(tuple)
record_counts = st.none() | st.builds(
    tm.RecordCount, count=st.integers(0, 10**12), partial=st.booleans()
)

# --- messages ---------------------------------------------------------------------------------


@st.composite
def poll_responses(draw: st.DrawFn, version: str) -> tm.PollResponse:
    v11 = version == V11
    ids = message_ids(version)
    common: dict[str, Any] = {
        "message_id": draw(ids),
        "in_response_to": draw(ids),
        "version": version,
        "extended_headers": draw(extended_headers),
        "collection_name": draw(identifiers),
        "subscription_id": draw(st.none() | identifiers),
        "message": draw(st.none() | free_text),
        "content_blocks": tuple(draw(st.lists(content_blocks(version), max_size=4))),
    }
    if v11:
        return tm.PollResponse(
            **common,
            more=draw(st.booleans()),
            result_id=draw(st.none() | identifiers),
            result_part_number=draw(st.integers(1, 10**6)),
            exclusive_begin_timestamp=draw(maybe_timestamp),
            inclusive_end_timestamp=draw(maybe_timestamp),
            record_count=draw(record_counts),
        )
    return tm.PollResponse(
        **common,
        inclusive_begin_timestamp=draw(maybe_timestamp),
        inclusive_end_timestamp=draw(timestamps),
    )


@st.composite
def status_messages(draw: st.DrawFn, version: str) -> tm.StatusMessage:
    v11 = version == V11
    ids = message_ids(version)
    status_types = st.sampled_from(
        [tm.ST_SUCCESS, tm.ST_PENDING, tm.ST_RETRY, tm.ST_UNAUTHORIZED, tm.ST_NOT_FOUND]
    )
    details = st.lists(
        st.builds(
            tm.StatusDetail,
            name=st.sampled_from([tm.SD_ESTIMATED_WAIT, tm.SD_RESULT_ID, tm.SD_ITEM]) | identifiers,
            value=free_text | st.integers(0, 10**6).map(str),
        ),
        max_size=4,
    ).map(tuple)
    return tm.StatusMessage(
        message_id=draw(ids),
        in_response_to=draw(ids),
        version=version,
        extended_headers=draw(extended_headers),
        status_type=draw(status_types | identifiers),
        details=draw(details) if v11 else (),
        detail_text=None if v11 else draw(st.none() | free_text),
        message=draw(st.none() | free_text),
    )


@st.composite
def inbox_messages(draw: st.DrawFn, version: str) -> tm.InboxMessage:
    v11 = version == V11
    source = None
    if draw(st.booleans()):
        if v11:
            source = tm.SourceSubscription(
                collection_name=draw(identifiers),
                subscription_id=draw(identifiers),
                exclusive_begin_timestamp=draw(maybe_timestamp),
                inclusive_end_timestamp=draw(maybe_timestamp),
            )
        else:
            source = tm.SourceSubscription(
                collection_name=draw(identifiers),
                subscription_id=draw(st.none() | identifiers),
                inclusive_begin_timestamp=draw(maybe_timestamp),
                inclusive_end_timestamp=draw(timestamps),
            )
    return tm.InboxMessage(
        message_id=draw(message_ids(version)),
        version=version,
        extended_headers=draw(extended_headers),
        message=draw(st.none() | free_text),
        result_id=draw(st.none() | identifiers) if v11 else None,
        destination_collection_names=(
            tuple(draw(st.lists(identifiers, max_size=3))) if v11 else ()
        ),
        source_subscription=source,
        record_count=draw(record_counts) if v11 else None,
        content_blocks=tuple(draw(st.lists(content_blocks(version), max_size=4))),
    )


versions = st.sampled_from([V11, V10])
messages = versions.flatmap(
    lambda v: st.one_of(poll_responses(v), status_messages(v), inbox_messages(v))
)

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(messages)
def test_generated_messages_round_trip(msg: tm.Message) -> None:
    data = msg.to_xml()
    again = tm.parse(data)
    assert canonical(again) == canonical(msg)
    assert tm.parse(again.to_xml()) == again
    assert_schema_valid(data, msg.version)


@PROPERTY_SETTINGS
@given(versions.flatmap(poll_responses))
def test_generated_poll_responses_stream_both_ways(msg: tm.PollResponse) -> None:
    header = dataclasses.replace(msg, content_blocks=())
    chunks = list(tm.iter_poll_response_xml(header, msg.content_blocks))
    assert b"".join(chunks) == msg.to_xml() or not msg.content_blocks
    reader = tm.iter_poll_response(io.BytesIO(b"".join(chunks)))
    assert isinstance(reader, tm.PollResponseReader)
    assert reader.header == header
    assert canonical(tuple(reader)) == canonical(msg.content_blocks)
    assert reader.header == header

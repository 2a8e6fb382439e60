"""The hub's TAXII 1.1 services: with our client, and with cabby as an OTX user would."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
from hub_fixture import PULSES, Hub

from feedgate.hub.taxii_http import MAX_INBOX_BYTES, MAX_QUERY_BYTES
from feedgate.stix import read_observables
from feedgate.taxii import messages as tm
from feedgate.taxii.client import StatusError, TaxiiClient
from http_raw import declared_but_not_sent


def client(hub: Hub, key: str | None = None) -> TaxiiClient:
    return TaxiiClient(
        host=hub.host,
        port=hub.port,
        discovery_path="/taxii/discovery",
        username=key or hub.api_key,
        password="x",
    )


def test_discovery_lists_four_services(hub: Hub) -> None:
    with client(hub) as taxii:
        services = taxii.discover_services()
    assert sorted(s.service_type for s in services) == sorted(
        [tm.SVC_DISCOVERY, tm.SVC_COLLECTION_MANAGEMENT, tm.SVC_POLL, tm.SVC_INBOX]
    )
    assert all(s.address.startswith(hub.url + "/taxii/") for s in services)


def test_one_collection_per_subscribed_author(hub: Hub) -> None:
    with client(hub) as taxii:
        collections = {c.collection_name: c for c in taxii.get_collections()}
    assert hub.collection in collections  # every user follows the default author
    assert collections[hub.collection].description == f"Data feed for user: {hub.author}"
    assert collections[hub.collection].collection_type == tm.CT_DATA_FEED


def test_poll_all_parts_one_package_per_pulse(hub: Hub) -> None:
    with client(hub) as taxii:
        blocks = list(taxii.poll(hub.collection))
    assert 0 < len(blocks) == hub.visible() < PULSES  # the private pulses are not alice's
    labels = [b.timestamp_label for b in blocks]
    assert labels == sorted(labels) and len(set(labels)) == len(blocks)
    titles = [re.search(rb"<stix:Title>(.*?)</stix:Title>", b.content) for b in blocks]
    assert all(titles)


def test_window_and_count_only(hub: Hub) -> None:
    with client(hub) as taxii:
        labels = [b.timestamp_label for b in taxii.poll(hub.collection)]
        inside = list(taxii.poll(hub.collection, labels[2], labels[7]))
        count = taxii.get_content_count(hub.collection, labels[2], labels[7])
    assert [b.timestamp_label for b in inside] == labels[3:8]
    assert count is not None and count.count == 5


def test_pulses_added_mid_poll_are_neither_repeated_nor_missed(hub: Hub) -> None:
    from feedgate.hub.seed import generate

    visible = hub.visible()
    new = list(generate(3, 2, author=hub.author, seed=99, until=datetime(2026, 11, 2)))
    with client(hub) as taxii:
        seen = []
        for i, block in enumerate(taxii.poll(hub.collection)):
            seen.append(block.timestamp_label)
            if i == 2:  # during part 1: publish more pulses of the same author
                hub.store.add_pulses(new)
        after = [b.timestamp_label for b in taxii.poll(hub.collection, seen[-1])]
    assert len(seen) == len(set(seen)) == visible
    assert len(after) == sum(p.public for p in new)  # the new ones come with the next poll


def test_part_after_the_last_is_empty_and_beyond_is_invalid(hub: Hub) -> None:
    with client(hub) as taxii:
        first = next(iter(taxii.poll(hub.collection)))
    assert first  # a result id exists for multi-part results; ask the parts by hand

    request = tm.PollRequest(
        message_id="1", collection_name=hub.collection, poll_parameters=tm.PollParameters()
    )
    auth = (hub.api_key, "x")
    answer = tm.parse(
        httpx.post(f"{hub.url}/taxii/poll", content=request.to_xml(), auth=auth).content
    )
    assert isinstance(answer, tm.PollResponse) and answer.more and answer.result_id
    parts = -(-hub.visible() // 5)

    def part(n: int) -> tm.Message:
        fulfil = tm.PollFulfillment(
            message_id=str(n),
            collection_name=hub.collection,
            result_id=answer.result_id or "",
            result_part_number=n,
        )
        return tm.parse(
            httpx.post(f"{hub.url}/taxii/poll", content=fulfil.to_xml(), auth=auth).content
        )

    after_last = part(parts + 1)
    assert isinstance(after_last, tm.PollResponse)
    assert not after_last.more and after_last.content_blocks == ()
    beyond = part(parts + 2)
    assert isinstance(beyond, tm.StatusMessage)
    assert beyond.status_type == tm.ST_INVALID_RESPONSE_PART


def test_wrong_key_and_unknown_collection(hub: Hub) -> None:
    with client(hub, key="not-a-key") as taxii, pytest.raises(StatusError) as info:
        list(taxii.poll(hub.collection))
    assert info.value.status_type == tm.ST_UNAUTHORIZED
    with client(hub) as taxii, pytest.raises(StatusError) as info:
        list(taxii.poll("user_nobody"))
    assert info.value.status_type == tm.ST_NOT_FOUND
    assert info.value.details[tm.SD_ITEM] == ("user_nobody",)


def test_empty_collection_answers_at_once(hub: Hub) -> None:
    with client(hub) as taxii:
        assert list(taxii.poll("user_alice")) == []  # alice's own feed, nothing published


def test_inbox_publishes_a_pulse_of_mine(hub: Hub, tmp_path: object) -> None:
    package = (
        '<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" '
        'xmlns:indicator="http://stix.mitre.org/Indicator-2" '
        'xmlns:cybox="http://cybox.mitre.org/cybox-2" '
        'xmlns:AddressObj="http://cybox.mitre.org/objects#AddressObject-2" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="acme:pkg-1" version="1.1.1">'
        "<stix:STIX_Header><stix:Title>ACME blocklist</stix:Title></stix:STIX_Header>"
        '<stix:Indicators><stix:Indicator id="acme:i-1"><indicator:Observable><cybox:Object>'
        '<cybox:Properties xsi:type="AddressObj:AddressObjectType" category="ipv4-addr">'
        "<AddressObj:Address_Value>198.51.100.250</AddressObj:Address_Value>"
        "</cybox:Properties></cybox:Object></indicator:Observable></stix:Indicator>"
        "</stix:Indicators></stix:STIX_Package>"
    )
    with client(hub) as taxii:
        taxii.push(package, tm.CB_STIX_XML_111, collection_names=["user_alice"])
        taxii.push(package, tm.CB_STIX_XML_111, collection_names=["user_alice"])  # an update
        blocks = list(taxii.poll("user_alice"))
        with pytest.raises(StatusError) as info:
            taxii.push(package, tm.CB_STIX_XML_111, collection_names=[hub.collection])
    assert info.value.status_type == tm.ST_DESTINATION_COLLECTION_ERROR
    assert len(blocks) == 1
    import io

    values = [o.value for o in read_observables(io.BytesIO(blocks[0].content))]
    assert values == ["198.51.100.250"]
    assert blocks[0].timestamp_label is not None
    assert blocks[0].timestamp_label <= datetime.now(UTC)


def test_accounts_with_a_real_password(hub: Hub) -> None:
    hub.store.create_user("carol", password="correct horse battery staple")
    with TaxiiClient(
        host=hub.host,
        port=hub.port,
        discovery_path="/taxii/discovery",
        username="carol",
        password="correct horse battery staple",
    ) as taxii:
        for _ in range(3):  # repeated Basic auth is served from the verification cache
            assert len(list(taxii.poll(hub.collection))) >= PULSES
    with (
        TaxiiClient(host=hub.host, port=hub.port, username="carol", password="wrong") as taxii,
        pytest.raises(StatusError) as info,
    ):
        list(taxii.poll(hub.collection, uri="/taxii/poll"))
    assert info.value.status_type == tm.ST_UNAUTHORIZED


# --- request sizes -----------------------------------------------------------------------------

_TAXII_HEADERS = "X-TAXII-Content-Type: urn:taxii.mitre.org:message:xml:1.1\r\n"


def _poll_request_of(size: int) -> bytes:
    """A well-formed Poll_Request padded to about ``size`` bytes with extended headers (the
    shape of the 50 MB one that was read, parsed and answered)."""
    request = tm.PollRequest(
        message_id="big", collection_name="user_AlienVault", poll_parameters=tm.PollParameters()
    ).to_xml()
    pad = b"".join(
        b'<taxii_11:Extended_Header name="h%d">%s</taxii_11:Extended_Header>' % (n, b"x" * 10_000)
        for n in range(size // 10_050 + 1)
    )
    head, _, rest = request.partition(b"><")
    return head + b"><taxii_11:Extended_Headers>" + pad + b"</taxii_11:Extended_Headers><" + rest


@pytest.mark.parametrize("service", ["discovery", "collections", "poll"])
def test_a_request_over_a_megabyte_is_413_before_it_is_read(hub: Hub, service: str) -> None:
    """Only an inbox push has a reason to be big: the other services refuse a 50 MB request
    by its declared length, and one sent without a length as soon as it passes the limit."""
    assert MAX_QUERY_BYTES <= 1024**2
    raw = declared_but_not_sent(hub.url, f"/taxii/{service}", 50 * 1024**2, _TAXII_HEADERS)
    assert raw.startswith(b"HTTP/1.1 413"), raw[:200]
    assert b"at most 1048576 bytes" in raw
    body = _poll_request_of(2 * 1024**2)
    assert isinstance(tm.parse(body), tm.PollRequest)  # one the hub would otherwise answer
    answer = httpx.post(
        f"{hub.url}/taxii/{service}",
        content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),  # chunked
        headers={"X-TAXII-Content-Type": tm.VID_TAXII_XML_11},
        auth=(hub.api_key, "x"),
    )
    assert answer.status_code == 413
    refusal = tm.parse(answer.content)
    assert isinstance(refusal, tm.StatusMessage) and refusal.status_type == tm.ST_BAD_MESSAGE


def test_the_inbox_keeps_its_larger_limit(hub: Hub) -> None:
    body = b"<not-taxii>" + b"x" * (2 * 1024**2) + b"</not-taxii>"
    answer = httpx.post(  # read and parsed (a BAD_MESSAGE for what it says), not refused
        f"{hub.url}/taxii/inbox", content=body, auth=(hub.api_key, "x")
    )
    assert answer.status_code == 200
    said = tm.parse(answer.content)
    assert isinstance(said, tm.StatusMessage) and said.status_type == tm.ST_BAD_MESSAGE
    assert "over" not in (said.message or "")
    raw = declared_but_not_sent(hub.url, "/taxii/inbox", MAX_INBOX_BYTES + 1, _TAXII_HEADERS)
    assert raw.startswith(b"HTTP/1.1 413"), raw[:200]

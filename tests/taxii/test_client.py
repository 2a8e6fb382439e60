"""The TAXII client against a scripted server: paging, statuses, errors, auth, streaming.

Interop with real servers (OpenTAXII, cabby as the reference) is tested in test_interop_*.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from scripted_server import Answer, Request, ScriptedServer

from feedgate.taxii import messages as tm
from feedgate.taxii.client import (
    NotTaxiiError,
    StatusError,
    TaxiiClient,
    TaxiiError,
    TransportError,
)

PKG = (
    b'<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" id="ex:p-%d" version="1.1.1">'
    b"<stix:STIX_Header><stix:Title>pulse %d</stix:Title></stix:STIX_Header></stix:STIX_Package>"
)


def block(i: int) -> tm.ContentBlock:
    return tm.ContentBlock(
        content_binding=tm.ContentBinding(binding_id=tm.CB_STIX_XML_111),
        content=PKG % (i, i),
        timestamp_label=datetime(2026, 11, 1, tzinfo=UTC),
    )


def xml(message: tm.Message) -> Answer:
    return Answer(body=message.to_xml())


def response(
    request: Request, blocks: list[tm.ContentBlock], more: bool = False, part: int = 1
) -> Answer:
    parsed = tm.parse(request.body)
    return xml(
        tm.PollResponse(
            message_id="r",
            in_response_to=parsed.message_id,
            collection_name="c",
            more=more,
            result_id="res-1" if more or part > 1 else None,
            result_part_number=part,
            content_blocks=tuple(blocks),
        )
    )


def status(request: Request, status_type: str, message: str = "", **details: str) -> Answer:
    return xml(
        tm.StatusMessage(
            message_id="s",
            in_response_to=tm.parse(request.body).message_id,
            status_type=status_type,
            message=message or None,
            details=tuple(tm.StatusDetail(name=k, value=v) for k, v in details.items()),
        )
    )


def client(server: ScriptedServer, **kwargs: object) -> TaxiiClient:
    host, port = server.url.removeprefix("http://").split(":")
    options: dict[str, object] = {"host": host, "port": int(port), "retries": 0}
    options.update(kwargs)
    return TaxiiClient(**options)  # type: ignore[arg-type]


def test_poll_follows_more_and_asks_no_extra_part() -> None:
    def script(request: Request) -> Answer:
        message = tm.parse(request.body)
        if isinstance(message, tm.PollRequest):
            return response(request, [block(1), block(2)], more=True, part=1)
        assert isinstance(message, tm.PollFulfillment)
        assert message.result_id == "res-1"
        n = message.result_part_number
        return response(request, [block(2 * n - 1), block(2 * n)], more=n < 3, part=n)

    with ScriptedServer(script) as server, client(server) as taxii:
        blocks = list(taxii.poll("c", uri="/poll"))
    # (content keeps the namespace declarations it inherited from the envelope)
    assert [b.content.split(b"<stix:Title>")[1][:7] for b in blocks] == [
        b"pulse %d" % i for i in range(1, 7)
    ]
    assert len(server.requests) == 3  # parts 1, 2, 3 and not a 4th


def test_a_server_that_keeps_saying_more_stops_at_an_empty_part() -> None:
    def script(request: Request) -> Answer:
        message = tm.parse(request.body)
        part = getattr(message, "result_part_number", 1)
        return response(request, [block(part)] if part < 3 else [], more=True, part=part)

    with ScriptedServer(script) as server, client(server) as taxii:
        blocks = list(taxii.poll("c", uri="/poll"))
    assert len(blocks) == 2 and len(server.requests) == 3


def test_a_server_that_never_stops_hits_the_part_cap() -> None:
    def script(request: Request) -> Answer:
        part = getattr(tm.parse(request.body), "result_part_number", 1)
        return response(request, [block(part)], more=True, part=part)

    with (
        ScriptedServer(script) as server,
        client(server, max_parts=5) as taxii,
        pytest.raises(TaxiiError, match="still says there is more after 5 parts"),
    ):
        list(taxii.poll("c", uri="/poll"))
    assert len(server.requests) == 5


def test_poll_request_carries_the_window_and_bindings() -> None:
    seen: list[tm.PollRequest] = []

    def script(request: Request) -> Answer:
        message = tm.parse(request.body)
        assert isinstance(message, tm.PollRequest)
        seen.append(message)
        return response(request, [])

    begin = datetime(2026, 11, 1, tzinfo=UTC)
    end = datetime(2026, 11, 2, tzinfo=UTC)
    with ScriptedServer(script) as server, client(server) as taxii:
        assert (
            list(taxii.poll("coll", begin, end, content_bindings=[tm.CB_STIX_XML_12], uri="/poll"))
            == []
        )
        request = server.requests[0]
    assert request.headers["X-TAXII-Content-Type"] == tm.VID_TAXII_XML_11
    assert request.headers["X-TAXII-Services"] == tm.VID_TAXII_SERVICES_11
    assert request.headers["X-TAXII-Protocol"] == tm.VID_TAXII_HTTP_10
    poll = seen[0]
    assert (poll.collection_name, poll.exclusive_begin_timestamp, poll.inclusive_end_timestamp) == (
        "coll",
        begin,
        end,
    )
    assert poll.poll_parameters is not None
    assert poll.poll_parameters.content_bindings == (
        tm.ContentBinding(binding_id=tm.CB_STIX_XML_12),
    )


def test_count_only() -> None:
    def script(request: Request) -> Answer:
        message = tm.parse(request.body)
        assert isinstance(message, tm.PollRequest) and message.poll_parameters is not None
        assert message.poll_parameters.response_type == tm.RT_COUNT_ONLY
        return xml(
            tm.PollResponse(
                message_id="r",
                in_response_to=message.message_id,
                collection_name="c",
                record_count=tm.RecordCount(count=42, partial=True),
            )
        )

    with ScriptedServer(script) as server, client(server) as taxii:
        assert taxii.get_content_count("c", uri="/poll") == tm.RecordCount(count=42, partial=True)


@pytest.mark.parametrize(
    ("status_type", "details", "expected"),
    [
        (tm.ST_UNAUTHORIZED, {}, "TAXII status UNAUTHORIZED: go away"),
        (tm.ST_NOT_FOUND, {tm.SD_ITEM: "nope"}, "TAXII status NOT_FOUND: go away (ITEM=nope)"),
        (tm.ST_INVALID_RESPONSE_PART, {tm.SD_MAX_PART_NUMBER: "3"}, "MAX_PART_NUMBER=3"),
    ],
)
def test_status_messages_become_typed_errors(
    status_type: str, details: dict[str, str], expected: str
) -> None:
    with (
        ScriptedServer(lambda r: status(r, status_type, "go away", **details)) as server,
        client(server) as taxii,
    ):
        with pytest.raises(
            StatusError, match=expected.replace("(", r"\(").replace(")", r"\)")
        ) as info:
            list(taxii.poll("c", uri="/poll"))
        assert info.value.status_type == status_type
        assert info.value.details == {k: (v,) for k, v in details.items()}
        with pytest.raises(StatusError):
            taxii.get_collections(uri="/collections")


def test_retry_status_is_waited_for_and_retried() -> None:
    calls: list[float] = []

    def script(request: Request) -> Answer:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return status(request, tm.ST_RETRY, "busy", **{tm.SD_ESTIMATED_WAIT: "1"})
        return response(request, [block(1)])

    with ScriptedServer(script) as server, client(server) as taxii:
        assert len(list(taxii.poll("c", uri="/poll"))) == 1
    assert calls[1] - calls[0] >= 0.9


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (
            Answer(
                502,
                b"<html><head><title>502 Bad Gateway</title></head></html>",
                {"Content-Type": "text/html"},
            ),
            TransportError,
            "HTTP 502 Bad Gateway: an HTML page titled '502 Bad Gateway'",
        ),
        (
            Answer(200, b"<html><title>Login</title></html>", {"Content-Type": "text/html"}),
            NotTaxiiError,
            "answered text/html, not a TAXII message: an HTML page titled 'Login'",
        ),
        (Answer(200, b""), NotTaxiiError, "the input is empty"),
        (Answer(200, b"<x>oops"), NotTaxiiError, "cannot be read"),
        (Answer(401, b"", {"Content-Type": "text/plain"}), TransportError, "check the credentials"),
        (
            Answer(302, b"", {"Location": "https://elsewhere.example/"}),
            TransportError,
            "redirects to https://elsewhere.example/",
        ),
    ],
)
def test_what_is_not_taxii_says_what_came_back(
    answer: Answer, error: type[Exception], message: str
) -> None:
    with (
        ScriptedServer(lambda r: answer) as server,
        client(server) as taxii,
        pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")),
    ):
        list(taxii.poll("c", uri="/poll"))


def test_transient_http_errors_are_retried() -> None:
    def script(request: Request) -> Answer:
        if len(server.requests) < 3:
            return Answer(503, b"busy", {"Content-Type": "text/plain", "Retry-After": "0"})
        return response(request, [block(1)])

    with ScriptedServer(script) as server, client(server, retries=3) as taxii:
        assert len(list(taxii.poll("c", uri="/poll"))) == 1
    assert len(server.requests) == 3


def test_read_timeout() -> None:
    def script(request: Request) -> Answer:
        time.sleep(2)
        return response(request, [])

    with (
        ScriptedServer(script) as server,
        client(server, timeout=(2.0, 0.5)) as taxii,
        pytest.raises(TransportError, match="no answer within the read timeout"),
    ):
        list(taxii.poll("c", uri="/poll"))


def test_a_response_that_stops_mid_way_is_an_error() -> None:
    def body(request: Request) -> Iterator[bytes]:
        data = response(request, [block(i) for i in range(50)]).body
        assert isinstance(data, bytes)
        yield data[: len(data) // 2]  # then the chunked body just ends

    with (
        ScriptedServer(lambda r: Answer(200, body(r))) as server,
        client(server) as taxii,
        pytest.raises((NotTaxiiError, TransportError)),
    ):
        list(taxii.poll("c", uri="/poll"))


def test_basic_auth_and_extra_headers_are_sent() -> None:
    with (
        ScriptedServer(lambda r: response(r, [])) as server,
        client(server, username="key", password="x", headers={"X-Extra": "1"}) as taxii,
    ):
        list(taxii.poll("c", uri="/poll"))
        headers = server.requests[0].headers
    assert headers["Authorization"] == "Basic a2V5Ong="
    assert headers["X-Extra"] == "1"


def test_jwt_is_fetched_and_refreshed_once_on_unauthorized() -> None:
    tokens = iter(["t1", "t2"])

    class JwtServer(ScriptedServer):
        pass

    def script(request: Request) -> Answer:
        if request.path == "/management/auth":
            return Answer(
                200,
                b'{"token": "%s"}' % next(tokens).encode(),
                {"Content-Type": "application/json"},
            )
        if request.headers.get("Authorization") == "Bearer t1":
            return status(request, tm.ST_UNAUTHORIZED, "expired")
        assert request.headers.get("Authorization") == "Bearer t2"
        return response(request, [block(1)])

    with (
        JwtServer(script) as server,
        client(server, username="u", password="p", jwt_auth_url="/management/auth") as taxii,
    ):
        assert len(list(taxii.poll("c", uri="/poll"))) == 1
    assert [r.path for r in server.requests] == [
        "/management/auth",
        "/poll",
        "/management/auth",
        "/poll",
    ]


def test_gzip_answers_are_decompressed() -> None:
    def script(request: Request) -> Answer:
        data = response(request, [block(1), block(2)]).body
        assert isinstance(data, bytes)
        return Answer(
            200,
            gzip.compress(data),
            {"Content-Type": "application/xml", "Content-Encoding": "gzip"},
        )

    with ScriptedServer(script) as server, client(server) as taxii:
        assert len(list(taxii.poll("c", uri="/poll"))) == 2


def test_service_addresses_come_from_discovery() -> None:
    def script(request: Request) -> Answer:
        message = tm.parse(request.body)
        if isinstance(message, tm.DiscoveryRequest):
            services = tuple(
                tm.ServiceInstance(
                    service_type=kind,
                    services_version=tm.VID_TAXII_SERVICES_11,
                    protocol_binding=tm.VID_TAXII_HTTP_10,
                    address=f"/services/{kind.lower()}",
                    message_bindings=(tm.VID_TAXII_XML_11,),
                )
                for kind in (tm.SVC_POLL, tm.SVC_COLLECTION_MANAGEMENT)
            )
            return xml(
                tm.DiscoveryResponse(
                    message_id="d", in_response_to=message.message_id, service_instances=services
                )
            )
        return response(request, [block(1)])

    with ScriptedServer(script) as server, client(server, discovery_path="/discovery") as taxii:
        assert len(list(taxii.poll("c"))) == 1
    assert [r.path for r in server.requests] == ["/discovery", "/services/poll"]


def test_inbox_push_of_several_blocks_to_named_collections() -> None:
    seen: list[tm.InboxMessage] = []

    def script(request: Request) -> Answer:
        message = tm.parse(request.body)
        assert isinstance(message, tm.InboxMessage)
        seen.append(message)
        return status(request, tm.ST_SUCCESS)

    with ScriptedServer(script) as server, client(server) as taxii:
        taxii.push_blocks([block(1), block(2)], uri="/inbox", collection_names=["a", "b"])
    assert seen[0].destination_collection_names == ("a", "b")
    assert len(seen[0].content_blocks) == 2


def test_subscription_management_actions() -> None:
    actions: list[str] = []

    def script(request: Request) -> Answer:
        message = tm.parse(request.body)
        assert isinstance(message, tm.ManageCollectionSubscriptionRequest)
        actions.append(message.action)
        return xml(
            tm.ManageCollectionSubscriptionResponse(
                message_id="m",
                in_response_to=message.message_id,
                collection_name=message.collection_name,
            )
        )

    with ScriptedServer(script) as server, client(server) as taxii:
        taxii.subscribe("c", uri="/mgmt")
        taxii.get_subscription_status("c", "s1", uri="/mgmt")
        taxii.pause_subscription("c", "s1", uri="/mgmt")
        taxii.resume_subscription("c", "s1", uri="/mgmt")
        taxii.unsubscribe("c", "s1", uri="/mgmt")
    assert actions == ["SUBSCRIBE", "STATUS", "PAUSE", "RESUME", "UNSUBSCRIBE"]


def test_taxii_10_poll() -> None:
    def script(request: Request) -> Answer:
        message = tm.parse(request.body)
        assert message.version == tm.VID_TAXII_XML_10
        assert request.headers["X-TAXII-Content-Type"] == tm.VID_TAXII_XML_10
        return xml(
            tm.PollResponse(
                message_id="2",  # TAXII 1.0 ids are digits
                version=tm.VID_TAXII_XML_10,
                in_response_to=message.message_id,
                collection_name="c",
                inclusive_end_timestamp=datetime(2026, 11, 2, tzinfo=UTC),
                content_blocks=(block(1),),
            )
        )

    with ScriptedServer(script) as server, client(server, version="1.0") as taxii:
        assert len(list(taxii.poll("c", uri="/poll"))) == 1


def test_a_large_poll_streams_in_flat_memory() -> None:
    count = 10_000

    def body(request: Request) -> Iterator[bytes]:
        header = tm.PollResponse(
            message_id="r", in_response_to=tm.parse(request.body).message_id, collection_name="c"
        )
        yield from tm.iter_poll_response_xml(header, (block(i) for i in range(count)))

    with ScriptedServer(lambda r: Answer(200, body(r))) as server, client(server) as taxii:
        tracemalloc.start()
        seen = sum(1 for _ in taxii.poll("c", uri="/poll"))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert seen == count
    assert peak < 20 * 1024**2, f"peak {peak / 1e6:.1f} MB"

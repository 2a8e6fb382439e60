"""poll_raw: each part as the server sent it, with the same paging rules as poll()."""

from __future__ import annotations

import pytest
from scripted_server import Answer, Request, ScriptedServer
from test_client import block, client, response, status

from feedgate.taxii import messages as tm
from feedgate.taxii.client import StatusError, TaxiiError


def test_raw_parts_follow_more_and_stop_at_an_empty_part() -> None:
    def script(request: Request) -> Answer:
        part = getattr(tm.parse(request.body), "result_part_number", 1)
        answer = response(request, [block(part)] if part < 3 else [], more=True, part=part)
        assert isinstance(answer.body, bytes)
        return Answer(body=b'<?xml version="1.0" encoding="UTF-8"?>\n' + answer.body)

    with ScriptedServer(script) as server, client(server) as taxii:
        parts = list(taxii.poll_raw("c", uri="/poll"))
    assert len(parts) == 3 and len(server.requests) == 3
    assert all(b"Poll_Response" in p for p in parts)


def test_raw_status_and_part_cap() -> None:
    with (
        ScriptedServer(lambda r: status(r, tm.ST_NOT_FOUND, "nope")) as server,
        client(server) as taxii,
        pytest.raises(StatusError),
    ):
        list(taxii.poll_raw("c", uri="/poll"))

    def forever(request: Request) -> Answer:
        part = getattr(tm.parse(request.body), "result_part_number", 1)
        return response(request, [block(part)], more=True, part=part)

    with (
        ScriptedServer(forever) as server,
        client(server, max_parts=4) as taxii,
        pytest.raises(TaxiiError, match="after 4 parts"),
    ):
        list(taxii.poll_raw("c", uri="/poll"))


def test_a_refusal_is_permanent_an_expired_result_id_is_not() -> None:
    """TaxiiError.permanent stops the poller's retries. NOT_FOUND to a Poll_Request (no such
    collection) is final; to a Poll_Fulfillment it is the result set that expired on the
    server, and a retry of the segment (a fresh Poll_Request) gets a new one."""

    def script(request: Request) -> Answer:
        message = tm.parse(request.body)
        if isinstance(message, tm.PollFulfillment):
            return status(request, tm.ST_NOT_FOUND, "unknown result id")
        answer = response(request, [block(1)], more=True, part=1)
        assert isinstance(answer.body, bytes)
        return Answer(body=b'<?xml version="1.0" encoding="UTF-8"?>\n' + answer.body)

    with (
        ScriptedServer(script) as server,
        client(server) as taxii,
        pytest.raises(StatusError) as expired,
    ):
        list(taxii.poll_raw("c", uri="/poll"))
    assert expired.value.status_type == tm.ST_NOT_FOUND and not expired.value.permanent

    with (
        ScriptedServer(lambda r: status(r, tm.ST_NOT_FOUND, "no such collection")) as server,
        client(server) as taxii,
        pytest.raises(StatusError) as missing,
    ):
        list(taxii.poll_raw("c", uri="/poll"))
    assert missing.value.permanent

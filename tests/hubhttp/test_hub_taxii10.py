"""The hub speaks TAXII 1.1 only; a TAXII 1.0 request gets a schema-valid 1.0 refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.hub.app import create_app
from feedgate.hub.store import HubStore
from feedgate.taxii import messages as tm
from feedgate.taxii.client import StatusError, TaxiiClient


def test_a_taxii_10_request_is_refused_in_valid_taxii_10(tmp_path: Path) -> None:
    store = HubStore(db.engine(str(tmp_path / "hub.db")))
    with serving(create_app(store)) as url:
        host, port = url.removeprefix("http://").split(":")
        taxii = TaxiiClient(host=host, port=int(port), version="1.0", keep_raw=True)
        with taxii, pytest.raises(StatusError) as info:
            taxii.discover_services(uri="/taxii/discovery")
    assert info.value.status_type == tm.ST_UNSUPPORTED_MESSAGE
    answer = tm.parse(taxii.raw_responses[-1])
    assert answer.version == tm.VID_TAXII_XML_10
    assert answer.message_id.isdigit()  # the 1.0 schema's message ids are digits only

"""A seeded hub on a free port, for the hub's TAXII tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hub_fixture import PER_PULSE, PULSES, Hub

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.hub.app import create_app
from feedgate.hub.seed import seed
from feedgate.hub.store import HubStore


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    path = Path(tmp_path_factory.mktemp("hub")) / "hub.db"
    store = HubStore(db.engine(str(path)))
    seed(store, pulses=PULSES, indicators_per_pulse=PER_PULSE, seed=7, until=datetime(2026, 11, 1))
    _, key = store.create_user("alice")
    assert key is not None
    with serving(create_app(store, page_size=5)) as url:
        host, port = url.removeprefix("http://").split(":")
        yield Hub(url, host, int(port), store, key)

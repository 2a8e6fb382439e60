"""The manager's REST API served on 127.0.0.1 for a test, with a client that sends the token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from feedgate.asgi_server import serving
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.store import FeedStore
from feedgate.web.api import create_api


@contextmanager
def api_client(store: FeedStore, token: str, **options: Any) -> Iterator[httpx.Client]:
    """A client of ``create_api(store, ..., token, **options)``, its base URL set, the bearer
    token sent, the environment's proxies ignored."""
    app = create_api(store, ThreatFeedLog(store, write_file=False), token, **options)
    with (
        serving(app) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, trust_env=False
        ) as client,
    ):
        yield client

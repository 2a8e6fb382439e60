"""The hub as one ASGI application: TAXII 1.1 at /taxii/* and the OTX REST API at /api/v1/*.

`feedgate hub serve` runs it with uvicorn; tests run it on a free port."""

from __future__ import annotations

from starlette.applications import Starlette

from .feed import StoreFeed
from .rest import RestApi
from .store import HubStore
from .taxii_services import TaxiiServices


def create_app(store: HubStore, *, page_size: int = 1000) -> Starlette:
    """The hub's web application over ``store``."""
    taxii = TaxiiServices(StoreFeed(store), page_size=page_size)
    return Starlette(routes=[*taxii.routes(), *RestApi(store).routes()])

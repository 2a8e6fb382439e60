"""The hub as one ASGI application: TAXII 1.1 at /taxii/*, the OTX REST API at /api/v1/* (its
index at /api/v1/), and /healthz.

`feedgate hub serve` runs it with uvicorn; tests run it on a free port."""

from __future__ import annotations

import logging

import sqlalchemy.exc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .feed import StoreFeed
from .rest import RestApi
from .store import HubStore
from .taxii_services import TaxiiServices


def create_app(store: HubStore, *, page_size: int = 1000) -> Starlette:
    """The hub's web application over ``store``."""
    taxii = TaxiiServices(StoreFeed(store), page_size=page_size)

    def healthz(_request: Request) -> Response:
        """200 when the hub can read its database, 503 when not (for load balancers and
        monitors; no authentication, nothing about the data)."""
        try:
            store.max_seq()
        except sqlalchemy.exc.SQLAlchemyError:
            logging.getLogger("feedgate.hub").exception("health check: the database fails")
            return JSONResponse({"status": "error", "detail": "database unavailable"}, 503)
        return JSONResponse({"status": "ok"})

    health = Route("/healthz", healthz, methods=["GET"])
    return Starlette(routes=[health, *taxii.routes(), *RestApi(store).routes()])

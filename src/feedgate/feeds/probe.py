"""Test connection: ask a source's server which collections it has (a TAXII collection
information request) with the source's own settings, before the source is saved or polled.

An admin filling in a source wants to know at once whether the host, the port, HTTPS, the
credentials and the proxy work and whether the collection is there, not after the first
scheduled poll fails. The request goes where discovery says (when the source has a discovery
path), else to the collection service beside the poll service (``/taxii/poll`` →
``/taxii/collections``: the layout of OTX and of feedgate's hub). The client is the poller's
own (:func:`feedgate.feeds.poller.default_client`), so the test reaches the server as a poll
will: the same TLS, proxy and timeout.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from feedgate.taxii.client import TaxiiClient, TaxiiError

from .poller import default_client
from .sources import Source, endpoint

__all__ = ["FoundCollection", "Probe", "collections_url", "probe_collections"]


@dataclass(frozen=True)
class FoundCollection:
    """A collection the server listed: its name, description and whether it is available."""

    name: str
    description: str
    available: bool | None


@dataclass(frozen=True)
class Probe:
    """What Test connection found: the collections (``error`` None), or the error in one
    line; ``asked`` says where (the collection service's URL, or "discovery at ...")."""

    asked: str
    collections: tuple[FoundCollection, ...] = field(default=())
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def has(self, collection: str) -> bool:
        """Whether the server listed ``collection`` (the one the source polls)."""
        return any(found.name == collection for found in self.collections)


def collections_url(source: Source) -> str:
    """The collection service beside ``source``'s poll service (same directory)."""
    path = posixpath.join(posixpath.dirname(source.poll_path.rstrip("/")) or "/", "collections")
    return endpoint(source).removesuffix(source.poll_path) + path


def probe_collections(
    source: Source, client_factory: Callable[[Source], TaxiiClient] = default_client
) -> Probe:
    """Ask ``source``'s server for its collections; never raises for what the server or the
    network does (it is in :attr:`Probe.error`)."""
    if source.discovery_path:
        asked = f"discovery at {endpoint(source).removesuffix(source.poll_path)}"
        asked += source.discovery_path
        uri: str | None = None
    else:
        asked = uri = collections_url(source)
    try:
        with client_factory(source) as client:
            found = client.get_collections(uri)
    except (TaxiiError, ValueError, OSError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if source.discovery_path is None:
            text += (
                f" (asked {asked}; if the server's collection service is elsewhere,"
                " give its Discovery Path)"
            )
        return Probe(asked, error=text)
    return Probe(
        asked,
        tuple(
            FoundCollection(c.collection_name, " ".join(c.description.split()), c.available)
            for c in found
        ),
    )

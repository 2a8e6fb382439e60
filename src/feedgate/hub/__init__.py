"""feedgate.hub: an OTX-compatible threat exchange (design.md "OTX pulses").

``model`` holds the records and OTX JSON, ``store`` the database (its tables in ``schema``),
``seed`` demo data; the admin commands are ``feedgate hub ...`` in :mod:`feedgate.cli.hub`. The
TAXII 1.1 services and the REST API are built on :class:`HubStore`.
"""

from __future__ import annotations

from .model import (
    INDICATOR_TYPES,
    Indicator,
    OTXFormatError,
    Pulse,
    User,
    pulse_from_otx,
    pulse_to_otx,
)

__all__ = [
    "INDICATOR_TYPES",
    "Indicator",
    "OTXFormatError",
    "Pulse",
    "User",
    "pulse_from_otx",
    "pulse_to_otx",
]

"""A STIX 1.x package pushed to the hub's inbox, turned into a pulse of the pusher.

An organisation publishes its own feed with ``taxii-push`` (or any TAXII client): each package
becomes a pulse of theirs, and pushing the same package again (same package id) updates that
pulse instead of making another. The package is read with the ordinary STIX reader, so what
counts as an indicator here is exactly what feedgate reads from any feed; kinds map back to
OTX's indicator types.
"""

from __future__ import annotations

import hashlib
import io
from datetime import datetime
from typing import Final

from feedgate.observables import Kind, Observable
from feedgate.stix import ReadStats, read_observables

from .model import PRIVATE_TLPS, Indicator, Pulse, utcnow

_OTX_TYPES: Final = {
    Kind.IPV4: "IPv4",
    Kind.IPV6: "IPv6",
    Kind.CIDR: "CIDR",
    Kind.URL: "URL",
    Kind.EMAIL: "email",
    Kind.MD5: "FileHash-MD5",
    Kind.SHA1: "FileHash-SHA1",
    Kind.SHA256: "FileHash-SHA256",
}


def pulse_id_for(author: str, package_id: str) -> str:
    """The pulse id a package gets: stable, so a re-push updates the same pulse."""
    return hashlib.sha256(f"{author}\x00{package_id}".encode()).hexdigest()[:24]


def otx_type(obs: Observable) -> str | None:
    """OTX's type for an observable, or None for what OTX pulses cannot hold."""
    if obs.kind is Kind.DOMAIN:
        return "domain" if obs.value.count(".") == 1 else "hostname"
    if obs.kind is Kind.OTHER:
        return "Mutex" if obs.original_type == "MutexObjectType" else None
    return _OTX_TYPES.get(obs.kind)


def pulse_from_package(package: bytes, author: str, *, now: datetime | None = None) -> Pulse:
    """The pulse a pushed package stands for. ``ValueError`` when it holds nothing usable."""
    moment = now or utcnow()
    if not package.lstrip()[:1] == b"<":
        raise ValueError("the content is not a STIX 1.x package (XML)")
    stats = ReadStats()
    observables = list(read_observables(io.BytesIO(package), stats=stats))
    if stats.packages == 0:
        raise ValueError("the content is not a STIX 1.x package")
    context = observables[0].context if observables else {}
    package_id = str(context.get("package_id") or hashlib.sha256(package).hexdigest())
    indicators: list[Indicator] = []
    seen: set[tuple[str, str]] = set()
    for obs in observables:
        kind = otx_type(obs)
        if kind is None or (kind, obs.value) in seen:
            continue
        seen.add((kind, obs.value))
        indicators.append(
            Indicator(
                indicator=obs.value,
                type=kind,
                created=moment,
                title=str(obs.context.get("indicator_title") or ""),
                description=str(obs.context.get("description") or ""),
            )
        )
    if not indicators:
        raise ValueError("the package holds no indicator an OTX pulse can carry")
    tlp = str(context.get("tlp") or "white").lower()
    return Pulse(
        id=pulse_id_for(author, package_id),
        name=str(context.get("package_title") or f"Published by {author}"),
        author_name=author,
        created=moment,
        modified=moment,
        description=str(context.get("package_description") or ""),
        tlp=tlp,
        public=tlp not in PRIVATE_TLPS,  # OTX refuses a public amber or red pulse
        indicators=tuple(indicators),
    )

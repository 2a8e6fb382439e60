"""Small helpers shared by the STIX reader tests: build packages, read them, summarise results."""

from __future__ import annotations

import io
from pathlib import Path

from feedgate.observables import Observable
from feedgate.stix import ReadStats, read_observables

DATA = Path(__file__).parent / "data"

NS = (
    'xmlns:stix="http://stix.mitre.org/stix-1" '
    'xmlns:stixCommon="http://stix.mitre.org/common-1" '
    'xmlns:indicator="http://stix.mitre.org/Indicator-2" '
    'xmlns:incident="http://stix.mitre.org/Incident-1" '
    'xmlns:cybox="http://cybox.mitre.org/cybox-2" '
    'xmlns:cyboxCommon="http://cybox.mitre.org/common-2" '
    'xmlns:AddressObj="http://cybox.mitre.org/objects#AddressObject-2" '
    'xmlns:DomainNameObj="http://cybox.mitre.org/objects#DomainNameObject-1" '
    'xmlns:HostnameObj="http://cybox.mitre.org/objects#HostnameObject-1" '
    'xmlns:URIObj="http://cybox.mitre.org/objects#URIObject-2" '
    'xmlns:LinkObj="http://cybox.mitre.org/objects#LinkObject-1" '
    'xmlns:FileObj="http://cybox.mitre.org/objects#FileObject-2" '
    'xmlns:MutexObj="http://cybox.mitre.org/objects#MutexObject-2" '
    'xmlns:EmailMessageObj="http://cybox.mitre.org/objects#EmailMessageObject-2" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:ex="http://example.com/"'
)


def package(body: str, *, pkg_id: str = "ex:Package-1", title: str = "Test pulse") -> str:
    """A STIX 1.2 package around ``body`` (Indicators, Observables, Incidents ...)."""
    return (
        f'<stix:STIX_Package {NS} id="{pkg_id}" version="1.2">'
        f"<stix:STIX_Header><stix:Title>{title}</stix:Title></stix:STIX_Header>"
        f"{body}</stix:STIX_Package>"
    )


def indicator(observable: str, *, ind_id: str = "ex:indicator-1", title: str = "ind") -> str:
    return (
        f'<stix:Indicator xsi:type="indicator:IndicatorType" id="{ind_id}">'
        f"<indicator:Title>{title}</indicator:Title>{observable}</stix:Indicator>"
    )


def obs(props: str, *, obs_id: str | None = None, tag: str = "indicator:Observable") -> str:
    ident = f' id="{obs_id}"' if obs_id else ""
    return f"<{tag}{ident}><cybox:Object>{props}</cybox:Object></{tag}>"


def address(value: str, category: str | None = "ipv4-addr", **attrs: str) -> str:
    cat = f' category="{category}"' if category else ""
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return (
        f'<cybox:Properties xsi:type="AddressObj:AddressObjectType"{cat}>'
        f"<AddressObj:Address_Value{extra}>{value}</AddressObj:Address_Value></cybox:Properties>"
    )


def domain(value: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return (
        '<cybox:Properties xsi:type="DomainNameObj:DomainNameObjectType" type="FQDN">'
        f"<DomainNameObj:Value{extra}>{value}</DomainNameObj:Value></cybox:Properties>"
    )


def read(data: str | bytes, **kwargs: object) -> tuple[list[Observable], ReadStats]:
    raw = data.encode() if isinstance(data, str) else data
    stats = ReadStats()
    found = list(read_observables(io.BytesIO(raw), stats=stats, **kwargs))  # type: ignore[arg-type]
    return found, stats


def pairs(found: list[Observable]) -> list[tuple[str, str]]:
    return [(str(o.kind), o.value) for o in found]

"""A deterministic, OTX-shaped TAXII 1.1 Poll_Response for benchmarks.

Why a generator and not a captured feed: the benchmark must be reproducible on any machine, with
no network and no licence question, and its size must scale (20,000 indicators for a quick check,
100,000 for the headline figure). So we write, from ``random.Random(seed)``, what AlienVault OTX's
TAXII service sends for a ``user_<author>`` collection: one Poll_Response with one Content_Block
per pulse, each holding one STIX 1.1.1 package shaped as described in ``design.md`` ("OTX pulses"):
one Indicator per IOC wrapping one CybOX Observable, no ``indicator:Type``, TLP handling, the
``alienvault-otx`` id namespace and the pulse URL as short description.

All values come from ranges reserved for documentation (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32, and the ``.example``/``.test``/``.invalid`` names), so the corpus
can never match real traffic. The text is written with string templates straight to a file:
generating 100,000 indicators (about 84 MB) takes a few seconds, and the result is reused when a
file for the same parameters already exists.

Run on its own it writes one corpus and prints its path::

    python bench/otx_corpus.py --indicators 1000 --per-package 50 --out /tmp
"""

from __future__ import annotations

import argparse
import html
import ipaddress
import json
import os
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

#: Bump when the shape of the output changes, so that stale corpora are not reused.
FORMAT_VERSION: Final = 2

TAXII_11_NS: Final = "http://taxii.mitre.org/messages/taxii_xml_binding-1.1"
STIX_111_BINDING: Final = "urn:stix.mitre.org:xml:1.1.1"
OTX_NS: Final = "https://otx.alienvault.com"
PULSE_URL: Final = "https://otx.alienvault.com/pulse/"

#: Namespace declarations of an OTX package, as python-stix 1.1.1 writes them.
NAMESPACES: Final = (
    ("cybox", "http://cybox.mitre.org/cybox-2"),
    ("cyboxCommon", "http://cybox.mitre.org/common-2"),
    ("cyboxVocabs", "http://cybox.mitre.org/default_vocabularies-2"),
    ("AddressObj", "http://cybox.mitre.org/objects#AddressObject-2"),
    ("DomainNameObj", "http://cybox.mitre.org/objects#DomainNameObject-1"),
    ("FileObj", "http://cybox.mitre.org/objects#FileObject-2"),
    ("MutexObj", "http://cybox.mitre.org/objects#MutexObject-2"),
    ("URIObj", "http://cybox.mitre.org/objects#URIObject-2"),
    ("marking", "http://data-marking.mitre.org/Marking-1"),
    ("tlpMarking", "http://data-marking.mitre.org/extensions/MarkingStructure#TLP-1"),
    ("indicator", "http://stix.mitre.org/Indicator-2"),
    ("stixCommon", "http://stix.mitre.org/common-1"),
    ("stixVocabs", "http://stix.mitre.org/default_vocabularies-1"),
    ("stix", "http://stix.mitre.org/stix-1"),
    ("alienvault-otx", OTX_NS),
    ("xsi", "http://www.w3.org/2001/XMLSchema-instance"),
)
_XMLNS: Final = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NAMESPACES)

#: OTX indicator types and their share of a pulse, roughly as seen in OTX subscriptions:
#: addresses, host names and URLs dominate, then file hashes; e-mail, IPv6, CIDR and mutexes are
#: rare.
TYPE_WEIGHTS: Final = (
    ("IPv4", 31),
    ("domain", 14),
    ("hostname", 13),
    ("URL", 15),
    ("FileHash-MD5", 8),
    ("FileHash-SHA1", 4),
    ("FileHash-SHA256", 9),
    ("email", 2),
    ("IPv6", 2),
    ("CIDR", 1),
    ("Mutex", 1),
)

_WORDS: Final = (
    *("alpha", "bravo", "cobalt", "delta", "ember", "falcon", "granite", "harbor", "indigo"),
    *("jasper", "kestrel", "lumen", "magenta", "nimbus", "onyx", "pepper", "quartz", "raven"),
    *("sable", "tango", "umber", "velvet", "willow", "xenon", "yonder", "zephyr", "update"),
    *("secure", "login", "account", "verify", "cloud", "mail", "portal", "cdn", "static"),
    *("api", "sync", "office", "docs"),
)
_SUBDOMAINS: Final = ("www", "mail", "cdn", "api", "login", "update", "files", "m", "secure")
_TLDS: Final = ("example", "test", "invalid")
_IPV4_NETS: Final = ("192.0.2", "198.51.100", "203.0.113")
_PATHS: Final = (
    "wp-content/plugins/{w}/{w2}.php",
    "wp-admin/css/{w}.php?id={n}",
    "{w}/{w2}/index.html",
    "download/{w}.exe",
    "gate.php?uid={n}&amp;ver={n2}",
    "images/{w}/{n}.jpg",
    "{w}.doc",
    "admin/{w}/login.php?redirect=%2F{w2}&amp;session={n}",
)
_THREATS: Final = (
    "Emotet",
    "TrickBot",
    "Qakbot",
    "Agent Tesla",
    "AsyncRAT",
    "Formbook",
    "IcedID",
    "Remcos",
    "Cobalt Strike",
    "njRAT",
    "LokiBot",
    "RedLine Stealer",
)
_ACTIVITY: Final = (
    "phishing campaign targeting finance departments",
    "malspam wave with macro-enabled documents",
    "command-and-control infrastructure",
    "credential harvesting pages",
    "exploit kit landing pages",
    "drive-by download chain",
    "ransomware delivery servers",
    "business e-mail compromise lures",
)
_SENTENCES: Final = (
    "The samples were delivered as ZIP attachments containing an obfuscated script.",
    "Observed infrastructure overlaps with activity reported in previous weeks.",
    "Indicators were extracted from sandbox detonations and passive DNS.",
    "The payload contacts its command-and-control servers over HTTPS on non-standard ports.",
    "Several domains were registered within the last seven days using privacy services.",
    "Victims are redirected through compromised WordPress sites before the final payload.",
    "The loader checks the system locale and exits on machines in excluded regions.",
    "Persistence is achieved through a scheduled task and a Run key in the registry.",
    "Network defenders should block the listed hosts and review proxy logs for matches.",
    "Hashes correspond to the first-stage droppers and the unpacked second stage.",
)
#: Most OTX indicators carry no description (the element is then left out).
_IND_DESCRIPTIONS: Final = (
    *([""] * 16),
    "C2 server",
    "Payload download location",
    "Phishing landing page",
    "Dropper observed in the wild",
    "Resolved by the first-stage loader during sandbox execution",
    "Sender address used in the malspam wave",
    "Hosting the credential harvesting kit; still active at time of writing",
    "Contacted over HTTPS on port 8443 by the unpacked second stage",
)
_MUTEX_PREFIXES: Final = ("Global\\", "Local\\", "")
_TLP: Final = ("WHITE", "WHITE", "WHITE", "GREEN", "AMBER")


@dataclass(frozen=True)
class CorpusSpec:
    """What to generate. Equal specs produce byte-identical files."""

    indicators: int = 100_000
    per_package: int = 50
    seed: int = 20161103

    @property
    def packages(self) -> int:
        return -(-self.indicators // self.per_package)

    @property
    def filename(self) -> str:
        return (
            f"otx-poll-response-{self.indicators}x{self.per_package}"
            f"-seed{self.seed}-v{FORMAT_VERSION}.xml"
        )


@dataclass(frozen=True)
class Corpus:
    """A generated corpus on disk and what it contains (read back from its sidecar file)."""

    path: Path
    spec: CorpusSpec
    size: int
    packages: int
    indicators: int
    by_type: dict[str, int]


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


class _Values:
    """Draws indicator values of each OTX type from documentation-only ranges."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _word(self) -> str:
        return self.rng.choice(_WORDS)

    def _domain(self) -> str:
        r = self.rng
        return f"{self._word()}-{self._word()}{r.randrange(1000)}.{r.choice(_TLDS)}"

    def value(self, kind: str) -> tuple[str, str]:
        """Return ``(indicator, xml-escaped indicator)``; only URLs need escaping here."""
        r = self.rng
        if kind == "IPv4":
            v = f"{r.choice(_IPV4_NETS)}.{r.randrange(1, 255)}"
        elif kind == "IPv6":
            groups = (r.randrange(65536), r.randrange(65536), r.randrange(1, 65536))
            v = "2001:db8:{:x}:{:x}::{:x}".format(*groups)
        elif kind == "domain":
            v = self._domain()
        elif kind == "hostname":
            v = f"{r.choice(_SUBDOMAINS)}.{self._domain()}"
        elif kind == "URL":
            path = r.choice(_PATHS).format(
                w=self._word(), w2=self._word(), n=r.randrange(10**6), n2=r.randrange(100)
            )
            host = self._domain() if r.random() < 0.85 else self.value("IPv4")[0]
            escaped = f"{r.choice(('http', 'http', 'https'))}://{host}/{path}"
            return html.unescape(escaped), escaped
        elif kind == "email":
            v = f"{self._word()}.{self._word()}{r.randrange(100)}@{self._domain()}"
        elif kind == "FileHash-MD5":
            v = f"{r.getrandbits(128):032x}"
        elif kind == "FileHash-SHA1":
            v = f"{r.getrandbits(160):040x}"
        elif kind == "FileHash-SHA256":
            v = f"{r.getrandbits(256):064x}"
        elif kind == "CIDR":
            prefix = r.randrange(24, 31)
            base = ipaddress.ip_address(f"{r.choice(_IPV4_NETS)}.{r.randrange(256)}")
            v = str(ipaddress.ip_network(f"{base}/{prefix}", strict=False))
        elif kind == "Mutex":
            v = f"{r.choice(_MUTEX_PREFIXES)}{self._word().upper()}{r.getrandbits(32):08X}"
        else:  # pragma: no cover - TYPE_WEIGHTS and this switch go together
            raise ValueError(kind)
        return v, _esc(v)


def _properties(kind: str, value: str, escaped: str) -> str:
    """The ``cybox:Object`` element (with its Properties) for one OTX indicator type."""
    if kind in ("IPv4", "IPv6", "email"):
        category = {"IPv4": "ipv4-addr", "IPv6": "ipv6-addr", "email": "e-mail"}[kind]
        return (
            "<cybox:Object>\n"
            f'          <cybox:Properties xsi:type="AddressObj:AddressObjectType" '
            f'category="{category}">\n'
            f'            <AddressObj:Address_Value condition="Equals">{escaped}'
            f"</AddressObj:Address_Value>\n"
            f"          </cybox:Properties>\n        </cybox:Object>"
        )
    if kind == "CIDR":
        network = ipaddress.ip_network(value)
        first, last = network[0], network[-1]
        return (
            "<cybox:Object>\n"
            f'          <cybox:Properties xsi:type="AddressObj:AddressObjectType" '
            f'category="ipv4-addr">\n'
            f'            <AddressObj:Address_Value condition="InclusiveBetween" '
            f'apply_condition="ANY">{first}##comma##{last}</AddressObj:Address_Value>\n'
            f"          </cybox:Properties>\n        </cybox:Object>"
        )
    if kind in ("domain", "hostname"):
        return (
            "<cybox:Object>\n"
            f'          <cybox:Properties xsi:type="DomainNameObj:DomainNameObjectType" '
            f'type="FQDN">\n'
            f'            <DomainNameObj:Value condition="Equals">{escaped}</DomainNameObj:Value>\n'
            f"          </cybox:Properties>\n        </cybox:Object>"
        )
    if kind == "URL":
        return (
            "<cybox:Object>\n"
            f'          <cybox:Properties xsi:type="URIObj:URIObjectType" type="URL">\n'
            f'            <URIObj:Value condition="Equals">{escaped}</URIObj:Value>\n'
            f"          </cybox:Properties>\n        </cybox:Object>"
        )
    if kind.startswith("FileHash-"):
        name = kind.removeprefix("FileHash-")
        return (
            "<cybox:Object>\n"
            f'          <cybox:Properties xsi:type="FileObj:FileObjectType">\n'
            f"            <FileObj:Hashes>\n"
            f"              <cyboxCommon:Hash>\n"
            f'                <cyboxCommon:Type xsi:type="cyboxVocabs:HashNameVocab-1.0" '
            f'condition="Equals">{name}</cyboxCommon:Type>\n'
            f'                <cyboxCommon:Simple_Hash_Value condition="Equals">{escaped}'
            f"</cyboxCommon:Simple_Hash_Value>\n"
            f"              </cyboxCommon:Hash>\n"
            f"            </FileObj:Hashes>\n"
            f"          </cybox:Properties>\n        </cybox:Object>"
        )
    if kind == "Mutex":
        return (
            "<cybox:Object>\n"
            f'          <cybox:Properties xsi:type="MutexObj:MutexObjectType" named="true">\n'
            f'            <MutexObj:Name condition="Equals">{escaped}</MutexObj:Name>\n'
            f"          </cybox:Properties>\n        </cybox:Object>"
        )
    raise ValueError(kind)  # pragma: no cover


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


class _Writer:
    """Renders packages; holds the random stream so that output depends only on the spec."""

    def __init__(self, spec: CorpusSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.values = _Values(self.rng)
        self.kinds = [k for k, _ in TYPE_WEIGHTS]
        self.weights = [w for _, w in TYPE_WEIGHTS]
        self.by_type: Counter[str] = Counter()
        self.start = datetime(2016, 11, 3, 20, 15, 43, 264000, tzinfo=UTC)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _pulse_description(self, subject: str) -> str:
        r = self.rng
        return " ".join([f"{subject}.", *r.sample(_SENTENCES, r.randrange(1, 6))])

    def package(self, index: int, count: int) -> tuple[str, str]:
        """Return ``(timestamp label, STIX_Package XML)`` of pulse ``index`` with ``count`` IOCs."""
        r = self.rng
        pulse_id = f"{r.getrandbits(96):024x}"
        pulse_url = PULSE_URL + pulse_id
        modified = self.start + timedelta(minutes=7 * index, microseconds=r.randrange(10**6))
        subject = f"{r.choice(_THREATS)} {r.choice(_ACTIVITY)}"
        name = f"{subject} ({modified:%Y-%m-%d})"
        parts = [
            f'<stix:STIX_Package {_XMLNS} id="alienvault-otx:Package-{self._uuid()}" '
            f'version="1.1.1" timestamp="{_iso(modified)}">\n'
            f"  <stix:STIX_Header>\n"
            f"    <stix:Title>{_esc(name)}</stix:Title>\n"
            f'    <stix:Package_Intent xsi:type="stixVocabs:PackageIntentVocab-1.0">Indicators'
            f"</stix:Package_Intent>\n"
            f"    <stix:Description>{_esc(self._pulse_description(subject))}</stix:Description>\n"
            f"    <stix:Short_Description>{pulse_url}</stix:Short_Description>\n"
            f"    <stix:Handling>\n"
            f"      <marking:Marking>\n"
            f"        <marking:Controlled_Structure>../../../../descendant-or-self::node()"
            f"</marking:Controlled_Structure>\n"
            f'        <marking:Marking_Structure xsi:type="tlpMarking:TLPMarkingStructureType" '
            f'color="{r.choice(_TLP)}"/>\n'
            f"      </marking:Marking>\n"
            f"    </stix:Handling>\n"
            f"    <stix:Information_Source>\n"
            f"      <stixCommon:Identity>\n"
            f"        <stixCommon:Name>Alienvault OTX</stixCommon:Name>\n"
            f"      </stixCommon:Identity>\n"
            f"      <stixCommon:Time>\n"
            f"        <cyboxCommon:Produced_Time>{_iso(modified)}</cyboxCommon:Produced_Time>\n"
            f"      </stixCommon:Time>\n"
            f"    </stix:Information_Source>\n"
            f"  </stix:STIX_Header>\n"
            f"  <stix:Indicators>\n"
        ]
        kinds = r.choices(self.kinds, self.weights, k=count)
        for kind in kinds:
            self.by_type[kind] += 1
            value, escaped = self.values.value(kind)
            description = r.choice(_IND_DESCRIPTIONS)
            desc_xml = (
                f"      <indicator:Description>{_esc(description)}</indicator:Description>\n"
                if description
                else ""
            )
            parts.append(
                f'    <stix:Indicator id="alienvault-otx:indicator-{self._uuid()}" '
                f'xsi:type="indicator:IndicatorType">\n'
                f"      <indicator:Title>{escaped} from {pulse_url}</indicator:Title>\n"
                f"{desc_xml}"
                f'      <indicator:Observable id="alienvault-otx:Observable-{self._uuid()}">\n'
                f"        <cybox:Title>{kind} - {escaped}</cybox:Title>\n"
                f"        {_properties(kind, value, escaped)}\n"
                f"      </indicator:Observable>\n"
                f"    </stix:Indicator>\n"
            )
        parts.append("  </stix:Indicators>\n</stix:STIX_Package>")
        return modified.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"), "".join(parts)

    def poll_response(self) -> Iterator[str]:
        """Yield the Poll_Response document in pieces (one Content_Block at a time)."""
        spec = self.spec
        end = self.start + timedelta(minutes=7 * spec.packages)
        yield (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<taxii_11:Poll_Response xmlns:taxii_11="{TAXII_11_NS}" '
            f'message_id="{self.rng.randrange(10**9)}" '
            f'in_response_to="{self.rng.randrange(10**9)}" '
            'collection_name="user_AlienVault" more="false" result_part_number="1">\n'
            f"  <taxii_11:Exclusive_Begin_Timestamp>{_iso(self.start - timedelta(days=30))}"
            "</taxii_11:Exclusive_Begin_Timestamp>\n"
            f"  <taxii_11:Inclusive_End_Timestamp>{_iso(end)}"
            "</taxii_11:Inclusive_End_Timestamp>\n"
        )
        remaining = spec.indicators
        for index in range(spec.packages):
            count = min(spec.per_package, remaining)
            remaining -= count
            label, package = self.package(index, count)
            yield (
                "  <taxii_11:Content_Block>\n"
                f'    <taxii_11:Content_Binding binding_id="{STIX_111_BINDING}"/>\n'
                f"    <taxii_11:Content>{package}</taxii_11:Content>\n"
                f"    <taxii_11:Timestamp_Label>{label}</taxii_11:Timestamp_Label>\n"
                "  </taxii_11:Content_Block>\n"
            )
        yield "</taxii_11:Poll_Response>\n"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def generate(spec: CorpusSpec, path: Path) -> Corpus:
    """Write the corpus for ``spec`` to ``path`` (atomically) and describe it in a sidecar."""
    if spec.indicators < 1 or spec.per_package < 1:
        raise ValueError("indicators and per_package must be positive")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = _Writer(spec)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as out:
        for piece in writer.poll_response():
            out.write(piece)
    size = tmp.stat().st_size
    tmp.replace(path)
    meta = {
        "format_version": FORMAT_VERSION,
        "indicators": spec.indicators,
        "per_package": spec.per_package,
        "seed": spec.seed,
        "packages": spec.packages,
        "size": size,
        "by_type": dict(sorted(writer.by_type.items())),
    }
    _sidecar(path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return _load(path, spec)


def _load(path: Path, spec: CorpusSpec) -> Corpus:
    meta = json.loads(_sidecar(path).read_text(encoding="utf-8"))
    return Corpus(
        path=path,
        spec=spec,
        size=int(meta["size"]),
        packages=int(meta["packages"]),
        indicators=int(meta["indicators"]),
        by_type={str(k): int(v) for k, v in meta["by_type"].items()},
    )


def ensure_corpus(spec: CorpusSpec, out_dir: Path) -> tuple[Corpus, bool]:
    """Return the corpus for ``spec`` in ``out_dir``, generating it unless a complete one exists.

    The second item says whether it was reused. A file counts as complete when its sidecar
    exists and records the same size, so an interrupted run is never mistaken for a finished one.
    """
    path = out_dir / spec.filename
    if path.exists() and _sidecar(path).exists():
        try:
            corpus = _load(path, spec)
        except (ValueError, KeyError):
            pass
        else:
            if corpus.size == path.stat().st_size:
                return corpus, True
    return generate(spec, path), False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indicators", type=int, default=CorpusSpec.indicators)
    parser.add_argument("--per-package", type=int, default=CorpusSpec.per_package)
    parser.add_argument("--seed", type=int, default=CorpusSpec.seed)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args(argv)
    spec = CorpusSpec(args.indicators, args.per_package, args.seed)
    corpus, reused = ensure_corpus(spec, args.out)
    state = "reused" if reused else "generated"
    print(f"{corpus.path} ({state}; {corpus.size / 1e6:.1f} MB, {corpus.packages} packages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Deterministic, realistic demo pulses for the hub (``feedgate hub seed``).

Same ``seed``, ``author`` and ``until`` → the same pulses, byte for byte. Every OTX indicator type
appears (the first indicators of a run cycle through all of them). Values stay out of anybody's
real address space: IPs only from the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32), names only under reserved TLDs (.example, .test, .invalid).
Hashes, JA3 and certificate fingerprints are random hex; Bitcoin addresses are random base58
(their checksum is almost surely wrong, so they are not payable addresses).

Pulses are spread over ``months`` before ``until``; IPv4 indicators expire 30 days after they
were created, domains and e-mail addresses never; about one indicator in a hundred is inactive.
About one pulse in twenty is private, and so is every TLP amber or red pulse (OTX refuses those
as public).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from .model import INDICATOR_TYPES, PRIVATE_TLPS, Indicator, Pulse, utcnow
from .store import HubStore

IPV4_EXPIRY = timedelta(days=30)

_FAMILIES = (
    "Emotet",
    "TrickBot",
    "QakBot",
    "IcedID",
    "AgentTesla",
    "FormBook",
    "Cobalt Strike",
    "AsyncRAT",
    "RedLine Stealer",
    "LokiBot",
    "Dridex",
    "Ursnif",
    "Remcos",
    "NanoCore",
    "LockBit",
    "BlackCat",
    "Raccoon Stealer",
    "SocGholish",
)
_ADVERSARIES = ("TA505", "Wizard Spider", "FIN7", "APT28", "Lazarus Group", "TA542", "Scattered")
_BRANDS = ("Microsoft 365", "DocuSign", "DHL", "PayPal", "Dropbox", "Adobe", "a national bank")
_INDUSTRIES = (
    "Finance",
    "Healthcare",
    "Government",
    "Manufacturing",
    "Education",
    "Retail",
    "Energy",
    "Telecommunications",
    "Logistics",
)
_COUNTRIES = (
    "United States of America",
    "Germany",
    "United Kingdom",
    "France",
    "Japan",
    "Brazil",
    "India",
    "Italy",
    "Spain",
    "Canada",
    "Australia",
    "Netherlands",
)
_ATTACK_IDS = (
    "T1566.001",
    "T1566.002",
    "T1204.002",
    "T1059.001",
    "T1071.001",
    "T1105",
    "T1027",
    "T1547.001",
    "T1055",
    "T1486",
    "T1041",
    "T1573.002",
)
_CVES = ("CVE-2017-11882", "CVE-2021-40444", "CVE-2022-30190", "CVE-2023-23397", "CVE-2024-21413")
_TLDS = ("example", "test", "invalid")
_WORDS = (
    "secure",
    "login",
    "update",
    "cdn",
    "mail",
    "portal",
    "invoice",
    "account",
    "docs",
    "verify",
    "cloud",
    "files",
    "support",
    "office",
    "track",
    "billing",
    "static",
    "api",
    "online",
    "service",
)
_TEMPLATES = (
    "{family} C2 infrastructure – {month}",
    "{family} botnet indicators – {month}",
    "Malspam campaign delivering {family}",
    "{family} phishing wave targeting {industry}",
    "Credential phishing kit: fake {brand} login pages",
    "{adversary} spear-phishing with {family} loader",
    "Exploitation of {cve} delivering {family}",
    "{family} payload distribution servers",
)
_ROLES = ("command_and_control", "malware_hosting", "phishing", "scanning_host", "payload_delivery")
_TLP_WEIGHTS = (("white", 60), ("green", 30), ("amber", 8), ("red", 2))
_TYPE_WEIGHTS = {
    "IPv4": 22,
    "domain": 14,
    "hostname": 12,
    "URL": 14,
    "FileHash-SHA256": 12,
    "FileHash-MD5": 6,
    "FileHash-SHA1": 4,
    "email": 4,
    "IPv6": 2,
    "CIDR": 1,
    "URI": 2,
    "FileHash-PEHASH": 1,
    "FileHash-IMPHASH": 1,
    "FilePath": 1,
    "Mutex": 1,
    "CVE": 1,
    "YARA": 1,
    "JA3": 1,
    "osquery": 1,
    "SSLCertFingerprint": 1,
    "BitcoinAddress": 1,
}
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_IPV4_NETS = ("192.0.2", "198.51.100", "203.0.113")


@dataclass(frozen=True, slots=True)
class SeedResult:
    """What :func:`seed` wrote and how long it took."""

    pulses: int
    indicators: int
    seconds: float


class _Gen:
    """One seeded generator of pulses and indicator values."""

    def __init__(self, seed: int, author: str, until: datetime, months: int) -> None:
        self.rng = random.Random(f"feedgate-hub-seed:{seed}:{author}")
        self.author = author
        self.until = until
        self.span = timedelta(days=30 * months)
        self.types = list(_TYPE_WEIGHTS)
        self.weights = list(_TYPE_WEIGHTS.values())
        self.made = 0  # indicators so far: the first len(INDICATOR_TYPES) cycle through all types

    def hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def host(self, labels: int = 1) -> str:
        """A name under a reserved TLD: ``labels`` labels before the TLD."""
        r = self.rng
        number = str(r.randrange(100)) if r.random() < 0.4 else ""
        base = f"{r.choice(_WORDS)}-{r.choice(_WORDS)}{number}"
        subs = [r.choice(_WORDS) for _ in range(labels - 1)]
        return ".".join([*subs, base, r.choice(_TLDS)])

    def value(self, kind: str) -> tuple[str, str]:
        """An indicator value and its content (YARA and osquery carry their text there)."""
        r = self.rng
        if kind == "IPv4":
            return f"{r.choice(_IPV4_NETS)}.{r.randrange(1, 255)}", ""
        if kind == "IPv6":
            return f"2001:db8:{r.randrange(0x10000):x}::{r.randrange(1, 0x10000):x}", ""
        if kind == "CIDR":
            bits = r.choice((28, 29, 30))
            block = 2 ** (32 - bits)
            return f"{r.choice(_IPV4_NETS)}.{r.randrange(0, 256 // block) * block}/{bits}", ""
        if kind == "domain":
            return self.host(1), ""
        if kind == "hostname":
            return self.host(2), ""
        if kind == "email":
            user = r.choice(("billing", "noreply", "hr", "ceo", "support", "invoices", "admin"))
            return f"{user}{r.randrange(100)}@{self.host(1)}", ""
        if kind == "URL":
            scheme = r.choice(("http", "https"))
            path = f"{r.choice(_WORDS)}/{self.hex(8)}.{r.choice(('php', 'exe', 'zip', 'html'))}"
            return f"{scheme}://{self.host(2)}/{path}", ""
        if kind == "URI":
            return f"http://{self.host(1)}:8080/{r.choice(_WORDS)}?id={self.hex(6)}", ""
        if kind in ("FileHash-MD5", "FileHash-IMPHASH", "JA3"):
            return self.hex(32), ""
        if kind in ("FileHash-SHA1", "FileHash-PEHASH", "SSLCertFingerprint"):
            return self.hex(40), ""
        if kind == "FileHash-SHA256":
            return self.hex(64), ""
        if kind == "FilePath":
            name = f"{r.choice(_WORDS)}{r.randrange(10, 99)}.{r.choice(('exe', 'dll', 'js'))}"
            return f"C:\\Users\\Public\\{name}", ""
        if kind == "Mutex":
            return f"Global\\{r.choice(_WORDS)}-{self.hex(8)}", ""
        if kind == "CVE":
            return r.choice(_CVES), ""
        if kind == "YARA":
            rule = f"feedgate_demo_{self.hex(8)}"
            body = f'rule {rule} {{ strings: $a = "{self.hex(16)}" condition: $a }}'
            return rule, body
        if kind == "osquery":
            name = f"demo_pack_{self.hex(6)}"
            return name, "SELECT * FROM processes WHERE name = 'demo.exe';"
        if kind == "BitcoinAddress":
            return "1" + "".join(r.choice(_B58) for _ in range(33)), ""
        raise AssertionError(kind)  # pragma: no cover - every type is handled above

    def kind(self) -> str:
        if self.made < len(INDICATOR_TYPES):
            kind = INDICATOR_TYPES[self.made]
        else:
            kind = self.rng.choices(self.types, self.weights)[0]
        self.made += 1
        return kind

    def pulse(self, created: datetime, count: int) -> Pulse:
        r = self.rng
        family = r.choice(_FAMILIES)
        adversary = r.choice(_ADVERSARIES) if r.random() < 0.35 else ""
        industry = r.choice(_INDUSTRIES)
        name = r.choice(_TEMPLATES).format(
            family=family,
            month=created.strftime("%B %Y"),
            industry=industry,
            brand=r.choice(_BRANDS),
            adversary=adversary or "Unattributed actor",
            cve=r.choice(_CVES),
        )
        modified = min(self.until, created + timedelta(seconds=r.randrange(0, 10 * 86_400)))
        tags = sorted(
            {
                family.lower().replace(" ", "-"),
                *r.sample(
                    ("malspam", "phishing", "c2", "botnet", "loader", "stealer", "ransomware"), 2
                ),
            }
        )
        indicators: list[Indicator] = []
        seen: set[tuple[str, str]] = set()
        while len(indicators) < count:
            kind = self.kind()
            value, content = self.value(kind)
            if (kind, value) in seen:
                continue
            seen.add((kind, value))
            ind_created = created + timedelta(seconds=r.randrange(0, 600))
            indicators.append(
                Indicator(
                    indicator=value,
                    type=kind,
                    created=ind_created,
                    title=f"{family} {_ROLE_TITLES.get(kind, 'indicator')}",
                    description="",
                    content=content,
                    expiration=ind_created + IPV4_EXPIRY if kind == "IPv4" else None,
                    is_active=r.random() >= 0.01,
                    role=r.choice(_ROLES) if r.random() < 0.3 else None,
                )
            )
        return Pulse(
            id=self.hex(24),
            name=name,
            description=(
                f"Indicators observed in a {family} campaign"
                + (f" attributed to {adversary}" if adversary else "")
                + f" against the {industry.lower()} sector. Demo data generated by feedgate."
            ),
            author_name=self.author,
            created=created,
            modified=modified,
            revision=1 + (r.random() < 0.2) * r.randrange(1, 4),
            tlp=(tlp := r.choices([t for t, _ in _TLP_WEIGHTS], [w for _, w in _TLP_WEIGHTS])[0]),
            public=r.random() >= 0.05 and tlp not in PRIVATE_TLPS,  # OTX: amber/red are private
            adversary=adversary,
            targeted_countries=tuple(r.sample(_COUNTRIES, r.randrange(0, 4))),
            malware_families=(family,),
            attack_ids=tuple(sorted(r.sample(_ATTACK_IDS, r.randrange(1, 5)))),
            industries=(industry,),
            tags=tuple(tags),
            references=(f"https://research.{r.choice(_TLDS)}/reports/{self.hex(10)}",),
            extract_source=(),
            more_indicators=False,
            indicators=tuple(indicators),
        )


_ROLE_TITLES = {
    "IPv4": "C2 server",
    "IPv6": "C2 server",
    "domain": "C2 domain",
    "hostname": "payload host",
    "URL": "payload URL",
    "email": "malspam sender",
    "FileHash-SHA256": "sample",
    "FileHash-MD5": "sample",
    "FileHash-SHA1": "sample",
}


def generate(
    pulses: int,
    indicators_per_pulse: int,
    *,
    author: str = "AlienVault",
    seed: int = 0,
    until: datetime | None = None,
    months: int = 6,
) -> Iterator[Pulse]:
    """The seed pulses, oldest first, without storing them."""
    end = until or utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    gen = _Gen(seed, author, end, months)
    span_us = int(gen.span.total_seconds() * 1_000_000)
    offsets = sorted(gen.rng.randrange(span_us) for _ in range(pulses))
    start = end - gen.span
    for offset in offsets:
        yield gen.pulse(start + timedelta(microseconds=offset), indicators_per_pulse)


def seed(
    store: HubStore,
    pulses: int = 100,
    indicators_per_pulse: int = 20,
    author: str = "AlienVault",
    seed: int = 0,
    *,
    until: datetime | None = None,
    months: int = 6,
    make_default: bool = True,
) -> SeedResult:
    """Write ``pulses`` demo pulses of ``indicators_per_pulse`` indicators each by ``author``.

    ``until`` (default: today, 00:00 UTC) is the newest possible time; with the same arguments
    the same pulses come out. ``make_default``: if the hub has no default author yet, ``author``
    becomes it (every OTX user follows AlienVault). Raises ``HubError`` if the pulses exist
    (seed again with another ``seed`` or ``author``).
    """
    if pulses < 0 or indicators_per_pulse < 0:
        raise ValueError("pulses and indicators per pulse must not be negative")
    began = time.perf_counter()
    count = store.add_pulses_count(
        generate(
            pulses, indicators_per_pulse, author=author, seed=seed, until=until, months=months
        ),
        batch_size=1000,
    )
    if make_default and store.default_author() is None:
        store.set_default_author(author)
    return SeedResult(count, count * indicators_per_pulse, time.perf_counter() - began)

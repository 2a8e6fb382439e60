"""The false-positive gate (feedgate.mail.gate): a reason for every kind of observable that
would block the world, none for ordinary threats, the documentation ranges or the RFC 2606
names, and the popular-domain lists read from pymispwarninglists itself."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from feedgate.mail import gate
from feedgate.mail.gate import POPULAR_LISTS, gate_reason


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        ("domain", "google.com", "popular domain (Tranco top 10k)"),
        ("domain", "www.google.com", "popular domain (Google's domains)"),
        ("domain", "microsoft.com", "popular domain (Tranco top 10k)"),
        ("domain", "healthvault.com", "popular domain (Microsoft's domains)"),  # not in Tranco
        ("domain", "com", "public suffix"),
        ("domain", "co.uk", "public suffix"),
        ("domain", "github.io", "public suffix"),  # the list's private section
        ("ipv4", "10.1.2.3", "private address"),
        ("ipv4", "172.31.255.1", "private address"),
        ("ipv4", "192.168.0.1", "private address"),
        ("ipv4", "100.64.0.9", "shared (carrier-grade NAT) address"),
        ("ipv4", "127.0.0.1", "loopback address"),
        ("ipv4", "169.254.10.10", "link-local address"),
        ("ipv4", "224.0.0.251", "multicast address"),
        ("ipv4", "0.0.0.0", "unspecified address"),
        ("ipv4", "255.255.255.255", "reserved address"),
        ("ipv6", "::1", "loopback address"),
        ("ipv6", "::", "unspecified address"),
        ("ipv6", "fd00::5", "private address"),
        ("ipv6", "fe80::1", "link-local address"),
        ("ipv6", "ff02::1", "multicast address"),
        ("cidr", "10.20.0.0/16", "private network"),
        ("cidr", "172.0.0.0/8", "network containing private addresses"),
        ("cidr", "8.0.0.0/7", "network wider than /8"),
        ("cidr", "0.0.0.0/0", "network wider than /8"),
        ("cidr", "2000::/15", "network wider than /16"),
        ("cidr", "fe80::/64", "link-local network"),
        ("md5", hashlib.md5(b"").hexdigest(), "empty-file hash"),
        ("sha1", hashlib.sha1(b"").hexdigest(), "empty-file hash"),
        ("sha256", hashlib.sha256(b"").hexdigest(), "empty-file hash"),
        ("url", "https://www.google.com/", "home page of a popular domain (Google's domains)"),
        ("url", "http://10.0.0.1/", "home page of a private address"),
    ],
)
def test_what_would_block_the_world_has_a_reason(kind: str, value: str, reason: str) -> None:
    assert gate_reason(kind, value) == reason


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        # ordinary threats
        ("domain", "evil-login-portal.com"),
        ("domain", "mail.google.com"),  # a host of a popular domain is not the whole domain
        ("domain", "phish.azurewebsites.net"),  # one tenant of a platform: a real threat
        ("domain", "x.blogspot.com"),
        ("ipv4", "8.8.4.4"),
        ("ipv6", "2a00:1450:4001::1"),
        ("cidr", "45.0.0.0/8"),  # exactly /8: not wider
        ("cidr", "2a00::/16"),
        ("md5", "0" * 32),
        ("sha256", hashlib.sha256(b"x").hexdigest()),
        ("url", "https://www.google.com/url?q=https://evil.example"),
        ("url", "https://docs.google.com/forms/d/e/1FAIpQL/viewform"),
        ("email", "attacker@gmail.com"),
        # documentation ranges (TEST-NET-1/2/3, RFC 3849)
        ("ipv4", "192.0.2.1"),
        ("ipv4", "198.51.100.7"),
        ("ipv4", "203.0.113.200"),
        ("ipv6", "2001:db8::1"),
        ("cidr", "192.0.2.0/24"),
        ("cidr", "198.51.100.0/24"),
        ("cidr", "203.0.113.0/24"),
        ("cidr", "2001:db8::/32"),
        # RFC 2606 names (Tranco has example.com and example.org: exempted)
        ("domain", "example.com"),
        ("domain", "example.net"),
        ("domain", "example.org"),
        ("domain", "www.example.com"),
        ("domain", "evil.example.org"),
        ("domain", "phish.test"),
        ("domain", "malware.example"),
        ("domain", "nothing.invalid"),
        ("domain", "box.localhost"),
        ("url", "https://example.com/"),
        # what does not parse as its kind is no observable that blocks anything
        ("ipv4", "not-an-ip"),
        ("cidr", "10.0.0.0/99"),
        ("other", "Global\\mutex"),
    ],
)
def test_ordinary_and_demonstration_values_pass(kind: str, value: str) -> None:
    assert gate_reason(kind, value) is None


def _lists_dir() -> Path:
    import pymispwarninglists

    return Path(pymispwarninglists.__file__).parent / "data" / "misp-warninglists" / "lists"


def test_popular_domains_come_from_the_installed_misp_lists() -> None:
    """Not hand-copied: a domain of each list the gate uses is suppressed, naming that list,
    when no earlier list has it."""
    seen: set[str] = set()
    for key, label in POPULAR_LISTS.items():
        data = json.loads((_lists_dir() / key / "list.json").read_text(encoding="utf-8"))
        entries = [e.lstrip(".").lower() for e in data["list"]]
        assert entries, key
        fresh = next(
            e
            for e in entries
            if e not in seen and "." in e and gate_reason("domain", e) != "public suffix"
        )
        assert gate_reason("domain", fresh) == f"popular domain ({label})", (key, fresh)
        seen.update(entries)


def test_the_loaded_lists_hold_no_reserved_name_but_the_exempted_ones() -> None:
    """The module doc's claim: of the RFC 2606 names only example.com and example.org are on
    the lists used, and those are exempted explicitly."""
    reserved = []
    for key in POPULAR_LISTS:
        data = json.loads((_lists_dir() / key / "list.json").read_text(encoding="utf-8"))
        for entry in data["list"]:
            name = entry.lstrip(".").lower()
            last = name.rsplit(".", 1)[-1]
            if last in {"test", "example", "invalid", "localhost"} or name.split(".")[-2:] in (
                ["example", "com"],
                ["example", "net"],
                ["example", "org"],
            ):
                reserved.append(name)
    assert sorted(set(reserved)) == ["example.com", "example.org"]


def test_only_the_lists_used_are_read_and_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    gate._popular.cache_clear()
    gate_reason.cache_clear()
    opened: list[str] = []
    real = Path.read_text

    def spy(self: Path, *args: object, **kwargs: object) -> str:
        opened.append(self.parent.name)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", spy)
    assert gate_reason("domain", "google.com") is not None
    assert gate_reason("domain", "bing.com") is not None
    assert sorted(opened) == sorted(POPULAR_LISTS)

"""Tests of feedgate.observables: kinds, normalisation (one function per kind), refanging.

Normalisation is the identity of an observable, so the tests pin exact canonical text for each
kind, prove what must be left alone (URL path case and bytes, e-mail local parts), check that
garbage of every sort is refused with a reason (never another exception, never slowly), and use
hypothesis for the properties: idempotence on generated valid values, and "returns or raises
InvalidValue" on arbitrary text.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import string
from collections.abc import Callable

import idna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedgate.observables import (
    ENFORCEABLE_KINDS,
    MAX_VALUE_LENGTH,
    InvalidValue,
    Kind,
    Observable,
    normalise,
    normalise_cidr,
    normalise_domain,
    normalise_email,
    normalise_hash,
    normalise_ip,
    normalise_ip_range,
    normalise_url,
    refang,
    url_host,
)

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALL_KINDS = list(Kind)
REASON_LIMIT = 400  # no reason may be longer: error messages quote values cut short


def invalid(kind: Kind | str, value: str) -> str:
    """The reason normalise gives for refusing ``value``; fails if it is accepted."""
    with pytest.raises(InvalidValue) as info:
        normalise(kind, value)
    reason = str(info.value)
    assert reason.strip(), "InvalidValue must carry a reason"
    assert len(reason) <= REASON_LIMIT
    return reason


# --- kinds ------------------------------------------------------------------------------------


def test_kinds_and_enforceable_kinds() -> None:
    assert [str(k) for k in Kind] == [
        "ipv4",
        "ipv6",
        "cidr",
        "domain",
        "url",
        "email",
        "md5",
        "sha1",
        "sha256",
        "other",
    ]
    assert Kind.OTHER not in ENFORCEABLE_KINDS
    assert frozenset(Kind) - ENFORCEABLE_KINDS == {Kind.OTHER}


def test_normalise_accepts_kind_as_text_and_refines_the_kind() -> None:
    assert normalise("ipv4", "192.0.2.1") == (Kind.IPV4, "192.0.2.1")
    # The value says more than the feed did: trust the value.
    assert normalise("ipv4", "2001:DB8::1") == (Kind.IPV6, "2001:db8::1")
    assert normalise("ipv6", "::ffff:192.0.2.1") == (Kind.IPV4, "192.0.2.1")
    assert normalise("cidr", "192.0.2.1/32") == (Kind.IPV4, "192.0.2.1")
    assert normalise("cidr", "192.0.2.1") == (Kind.IPV4, "192.0.2.1")


def test_unknown_kind_and_non_text_values_are_invalid_values() -> None:
    with pytest.raises(InvalidValue, match="unknown observable kind"):
        normalise("hostname", "example.com")
    with pytest.raises(ValueError):  # InvalidValue is a ValueError: old callers keep working
        normalise("nope", "x")
    for value in (None, 42, b"192.0.2.1", ["192.0.2.1"]):
        with pytest.raises(InvalidValue, match="must be text"):
            normalise(Kind.IPV4, value)  # type: ignore[arg-type]


def test_other_is_only_stripped_but_still_refuses_garbage() -> None:
    assert normalise("other", "  Global\\MyMutex \n") == (Kind.OTHER, "Global\\MyMutex")
    yara = 'rule demo {\n\tstrings: $a = "x"\r\n\tcondition: $a\n}'
    assert normalise(Kind.OTHER, yara) == (Kind.OTHER, yara)  # multi-line values are kept
    for bad in ("", "   ", "\x00", "mutex\x00", "a\x07b", "a\x1b[31mb", "a\x0bb", "a\x85b"):
        invalid(Kind.OTHER, bad)


# --- domains ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", "example.com"),
        ("ExAmPlE.CoM", "example.com"),
        ("EXAMPLE.COM.", "example.com"),
        ("  sub.example.com\n", "sub.example.com"),
        # U-labels to A-labels (IDNA 2008 with UTS #46 mapping)
        ("Bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.EXAMPLE.", "xn--bcher-kva.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("straße.example", "xn--strae-oqa.example"),  # non-transitional: ß is kept
        ("пример.испытание", "xn--e1afmkfd.xn--80akhbyknj4f"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("mañana.example.com", "xn--maana-pta.example.com"),
        ("ＥＸＡＭＰＬＥ.com", "example.com"),  # full-width letters are mapped
        ("bücher\u3002example", "xn--bcher-kva.example"),  # ideographic full stop
        ("example\uff0ecom", "example.com"),  # full-width full stop
        ("ex\u00adample.com", "example.com"),  # soft hyphen is ignored by UTS #46
        # existing A-labels are kept (lower case) after validation
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"),
        ("xn--Bcher-KVA.example", "xn--bcher-kva.example"),
        ("bücher.xn--p1ai", "xn--bcher-kva.xn--p1ai"),
        # underscores: real DNS names have them
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("_sip._tcp.Example.com", "_sip._tcp.example.com"),
        ("a_b.example", "a_b.example"),
        # hyphens inside labels, digits, numeric labels other than the last
        ("a-b--c.example", "a-b--c.example"),
        ("r3---sn-abc.googlevideo.com", "r3---sn-abc.googlevideo.com"),
        ("1.2.3.example", "1.2.3.example"),
        ("123.com", "123.com"),
        ("example.x1", "example.x1"),
        # defanged
        ("evil[.]example", "evil.example"),
        ("evil(.)example", "evil.example"),
        ("evil{.}example", "evil.example"),
        ("evil[dot]example", "evil.example"),
        ("evil[DOT]example(dot)com", "evil.example.com"),
        ("hxxpool[.]example", "hxxpool.example"),  # hxxp only counts as a URL scheme
        ("fxpark[.]example", "fxpark.example"),
    ],
)
def test_domain_normalisation(value: str, expected: str) -> None:
    assert normalise(Kind.DOMAIN, value) == (Kind.DOMAIN, expected)
    assert normalise_domain(value) == (Kind.DOMAIN, expected)
    assert normalise(Kind.DOMAIN, expected) == (Kind.DOMAIN, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        (".", "empty"),
        ("localhost", "two labels"),
        ("com.", "two labels"),
        ("xn--bcher-kva", "two labels"),
        ("example.123", "numeric"),
        ("1.2.3.4.5", "numeric"),
        ("example.0x1f", "numeric"),  # what a browser would read as an IPv4 part
        ("192.0.2.1", "IP address"),
        ("192.0.2.1.", "IP address"),
        ("2001:db8::1", "IP address"),
        ("[2001:db8::1]", "IP address"),
        ("010.0.0.1", "numeric"),
        ("-a.example", "hyphen"),
        ("a-.example", "hyphen"),
        ("example.-com", "hyphen"),
        ("example.com-", "hyphen"),
        ("a..example", "empty label"),
        (".example.com", "empty label"),
        ("example.com..", "empty label"),
        ("exa mple.com", "invalid character"),
        ("exa/mple.com", "invalid character"),
        ("exa%41mple.com", "invalid character"),
        ("example.com:80", "invalid character"),
        ("*.example.com", "wildcard"),
        ("a*.example.com", "invalid character"),
        # invalid or non-canonical punycode
        ("xn--zz.example", "punycode"),
        ("xn--a.example", "punycode"),
        ("xn--.example", "punycode"),
        ("xn--bcher-kva-.example", "punycode"),
        ("xn---kva.example", "punycode"),  # "ü" is xn--tda
        ("xn--ls8h.example", "punycode"),  # decodes to an emoji: disallowed in IDNA 2008
        ("example.xn--", "punycode"),
        # disallowed code points
        ("😀.example", "internationalised"),
        ("i❤.example", "internationalised"),
        ("☃.example", "internationalised"),
        ("a\u200db.example", "internationalised"),  # ZWJ out of context
        ("a_ü.example", "internationalised"),  # no underscore in IDNs
        ("exa\u00a0mple.com", "invalid character"),  # NBSP maps to a space
    ],
)
def test_domain_rejections(value: str, reason: str) -> None:
    assert reason.lower() in invalid(Kind.DOMAIN, value).lower()


def test_domain_reason_names_the_disallowed_code_point() -> None:
    assert "U+1F600" in invalid(Kind.DOMAIN, "😀.example")


def test_domain_label_length_limit() -> None:
    assert normalise_domain("a" * 63 + ".example")[1] == "a" * 63 + ".example"
    assert "63" in invalid(Kind.DOMAIN, "a" * 64 + ".example")
    # The limit applies to the A-label, not to the number of Unicode characters.
    label = "ü" + "a" * 60
    assert len("xn--" + label.encode("punycode").decode()) > 63
    assert "too long" in invalid(Kind.DOMAIN, label + ".example").lower()


def test_domain_total_length_limit() -> None:
    name_253 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(name_253) == 253
    assert normalise_domain(name_253) == (Kind.DOMAIN, name_253)
    assert normalise_domain(name_253 + ".") == (Kind.DOMAIN, name_253)  # the root dot is free
    name_254 = name_253[:-1] + "dd"
    assert "253" in invalid(Kind.DOMAIN, name_254)
    # Many short labels: the total is what counts.
    assert "253" in invalid(Kind.DOMAIN, "a." * 127 + "com")


# --- IP addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("192.0.2.1", Kind.IPV4, "192.0.2.1"),
        (" 192.0.2.1\n", Kind.IPV4, "192.0.2.1"),
        ("0.0.0.0", Kind.IPV4, "0.0.0.0"),
        ("255.255.255.255", Kind.IPV4, "255.255.255.255"),
        ("192[.]0[.]2[.]1", Kind.IPV4, "192.0.2.1"),
        ("192(.)0(.)2(.)1", Kind.IPV4, "192.0.2.1"),
        # RFC 5952: lower case, no leading zeros, longest zero run compressed (first on ties),
        # a single zero group never compressed
        ("2001:DB8::1", Kind.IPV6, "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", Kind.IPV6, "2001:db8::1"),
        ("2001:0DB8:0:0:0:0:0:1", Kind.IPV6, "2001:db8::1"),
        ("2001:db8::0:1", Kind.IPV6, "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", Kind.IPV6, "2001:db8::1:0:0:1"),
        ("2001:db8:0:1:0:0:0:1", Kind.IPV6, "2001:db8:0:1::1"),
        ("2001:db8:0:1:1:1:1:1", Kind.IPV6, "2001:db8:0:1:1:1:1:1"),
        ("2001:0db8:0000:0000:0000:ff00:0042:8329", Kind.IPV6, "2001:db8::ff00:42:8329"),
        ("FE80:0000:0000:0000:0000:0000:0000:0000", Kind.IPV6, "fe80::"),
        ("0:0:0:0:0:0:0:0", Kind.IPV6, "::"),
        ("0:0:0:0:0:0:0:1", Kind.IPV6, "::1"),
        ("2001:db8[:]:1", Kind.IPV6, "2001:db8::1"),
        # IPv4-mapped IPv6 is IPv4
        ("::ffff:192.0.2.1", Kind.IPV4, "192.0.2.1"),
        ("::FFFF:C000:0201", Kind.IPV4, "192.0.2.1"),
        ("0:0:0:0:0:ffff:c000:201", Kind.IPV4, "192.0.2.1"),
        # but not other embeddings (IPv4-compatible, NAT64): those stay IPv6
        ("::192.0.2.1", Kind.IPV6, "::c000:201"),
        ("64:ff9b::192.0.2.1", Kind.IPV6, "64:ff9b::c000:201"),
    ],
)
def test_ip_normalisation(value: str, kind: Kind, expected: str) -> None:
    for given_kind in (Kind.IPV4, Kind.IPV6):
        assert normalise(given_kind, value) == (kind, expected)
    assert normalise_ip(value) == (kind, expected)


@pytest.mark.parametrize("value", ["010.0.0.1", "192.0.2.01", "0127.0.0.1", "00.0.0.0"])
def test_ipv4_leading_zeros_stay_rejected_with_a_reason(value: str) -> None:
    # Python's ipaddress refuses them (octal or decimal? inet_aton and browsers disagree).
    assert "leading zeros" in invalid(Kind.IPV4, value)


@pytest.mark.parametrize("value", ["fe80::1%eth0", "fe80::1%1", "FE80::1%25en0", "fe80::%lo"])
def test_ipv6_zone_ids_are_rejected(value: str) -> None:
    assert "zone" in invalid(Kind.IPV6, value)


@pytest.mark.parametrize(
    "value",
    [
        "1.2.3",
        "1.2.3.4.5",
        "256.0.0.1",
        "192.0.2.-1",
        "192.0.2.1/32",
        "192.0.2.1:80",
        "[192.0.2.1]",
        "[2001:db8::1]",
        "0x7f.0.0.1",
        "2130706433",
        "1::2::3",
        "12345::",
        "::g",
        "2001:db8::1::",
        ":::",
        "example.com",
        "١٩٢.٠.٢.١",  # Arabic-Indic digits
        "192.0.2.1 192.0.2.2",
    ],
)
def test_ip_garbage(value: str) -> None:
    for kind in (Kind.IPV4, Kind.IPV6):
        invalid(kind, value)


# --- networks and ranges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.0.2.0/24", (Kind.CIDR, "192.0.2.0/24")),
        (" 10.0.0.0/8 ", (Kind.CIDR, "10.0.0.0/8")),
        ("10.0.0.0/255.0.0.0", (Kind.CIDR, "10.0.0.0/8")),
        ("10[.]0[.]0[.]0/8", (Kind.CIDR, "10.0.0.0/8")),
        ("0.0.0.0/0", (Kind.CIDR, "0.0.0.0/0")),
        ("192.0.2.0/31", (Kind.CIDR, "192.0.2.0/31")),
        ("2001:DB8::/32", (Kind.CIDR, "2001:db8::/32")),
        ("2001:0db8:0000:0000::/64", (Kind.CIDR, "2001:db8::/64")),
        ("::/0", (Kind.CIDR, "::/0")),
        # single addresses are addresses
        ("192.0.2.7/32", (Kind.IPV4, "192.0.2.7")),
        ("2001:db8::7/128", (Kind.IPV6, "2001:db8::7")),
        ("192.0.2.7", (Kind.IPV4, "192.0.2.7")),
        ("2001:DB8::7", (Kind.IPV6, "2001:db8::7")),
        # IPv4-mapped networks are IPv4 networks, as mapped addresses are IPv4 addresses
        ("::ffff:192.0.2.0/120", (Kind.CIDR, "192.0.2.0/24")),
        ("::ffff:0:0/96", (Kind.CIDR, "0.0.0.0/0")),
        ("::ffff:192.0.2.1/128", (Kind.IPV4, "192.0.2.1")),
        ("::/64", (Kind.CIDR, "::/64")),  # holds more than the mapped range: stays IPv6
    ],
)
def test_cidr_normalisation(value: str, expected: tuple[Kind, str]) -> None:
    assert normalise(Kind.CIDR, value) == expected
    assert normalise_cidr(value) == expected
    assert normalise(expected[0], expected[1]) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("192.0.2.1/24", "host bits"),
        ("10.0.0.1/8", "host bits"),
        ("2001:db8::1/32", "host bits"),
        ("192.0.2.0/33", "not a CIDR"),
        ("2001:db8::/129", "not a CIDR"),
        ("192.0.2.0/", "not a CIDR"),
        ("/24", "not a CIDR"),
        ("192.0.2.0/24/8", "not a CIDR"),
        ("192.0.2.0/-1", "not a CIDR"),
        ("192.0.2.0/ 24", "not a CIDR"),
        ("010.0.0.0/8", "not a CIDR"),
        ("example.com/24", "not a CIDR"),
        ("fe80::%eth0/64", "zone"),
    ],
)
def test_cidr_rejections(value: str, reason: str) -> None:
    assert reason in invalid(Kind.CIDR, value)


def _minimal_cover(lo: int, hi: int, bits: int) -> list[tuple[int, int]]:
    """Reference: the greedy (and only minimal) split of [lo, hi] into aligned blocks."""
    out = []
    while lo <= hi:
        size = (lo & -lo) if lo else 1 << bits
        while size > hi - lo + 1:
            size //= 2
        out.append((lo, bits - size.bit_length() + 1))
        lo += size
    return out


def _as_pairs(first: int, last: int, version: int) -> list[tuple[Kind, str]]:
    bits = 32 if version == 4 else 128
    addr_kind = Kind.IPV4 if version == 4 else Kind.IPV6
    out = []
    for start, prefix in _minimal_cover(first, last, bits):
        net: ipaddress.IPv4Network | ipaddress.IPv6Network
        if version == 4:
            net = ipaddress.IPv4Network((start, prefix))
        else:
            net = ipaddress.IPv6Network((start, prefix))
        if prefix == bits:
            out.append((addr_kind, str(net.network_address)))
        else:
            out.append((Kind.CIDR, str(net)))
    return out


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("192.0.2.0", "192.0.2.255", [(Kind.CIDR, "192.0.2.0/24")]),
        ("192.0.2.5", "192.0.2.5", [(Kind.IPV4, "192.0.2.5")]),
        (
            "192.0.2.1",
            "192.0.2.6",
            [
                (Kind.IPV4, "192.0.2.1"),
                (Kind.CIDR, "192.0.2.2/31"),
                (Kind.CIDR, "192.0.2.4/31"),
                (Kind.IPV4, "192.0.2.6"),
            ],
        ),
        ("10.0.0.0", "10.255.255.255", [(Kind.CIDR, "10.0.0.0/8")]),
        ("0.0.0.0", "255.255.255.255", [(Kind.CIDR, "0.0.0.0/0")]),
        ("2001:db8::", "2001:DB8::ffff", [(Kind.CIDR, "2001:db8::/112")]),
        ("2001:db8::1", "2001:db8::2", [(Kind.IPV6, "2001:db8::1"), (Kind.IPV6, "2001:db8::2")]),
        ("::ffff:192.0.2.0", "192.0.2.3", [(Kind.CIDR, "192.0.2.0/30")]),
        (" 192[.]0[.]2[.]0 ", "192.0.2.1", [(Kind.CIDR, "192.0.2.0/31")]),
    ],
)
def test_ip_range_to_minimal_networks(
    first: str, last: str, expected: list[tuple[Kind, str]]
) -> None:
    assert normalise_ip_range(first, last) == expected


def test_ip_range_worst_case_ipv4_is_within_the_limit() -> None:
    out = normalise_ip_range("0.0.0.1", "255.255.255.254")
    assert len(out) == 62
    assert out == _as_pairs(1, 2**32 - 2, 4)


@pytest.mark.parametrize(
    ("first", "last", "reason"),
    [
        ("192.0.2.9", "192.0.2.1", "backwards"),
        ("2001:db8::2", "2001:db8::1", "backwards"),
        ("192.0.2.1", "2001:db8::1", "mixes IPv4 and IPv6"),
        ("2001:db8::1", "192.0.2.1", "mixes IPv4 and IPv6"),
        ("::1", "ffff::", "limit 64"),
        ("garbage", "192.0.2.1", "not an IP address"),
        ("192.0.2.1", "", "empty"),
        ("192.0.2.0/24", "192.0.2.255", "not an IP address"),
    ],
)
def test_ip_range_rejections(first: str, last: str, reason: str) -> None:
    with pytest.raises(InvalidValue, match=re.escape(reason)):
        normalise_ip_range(first, last)


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # scheme and host lower case, default ports dropped, non-default kept
        ("HTTP://Example.COM/", "http://example.com/"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("HTTPS://EXAMPLE.COM:443", "https://example.com/"),
        ("http://example.com:443/", "http://example.com:443/"),
        ("https://example.com:80/", "https://example.com:80/"),
        ("http://example.com:8080/", "http://example.com:8080/"),
        ("http://example.com:080/", "http://example.com/"),
        ("http://example.com:08080/", "http://example.com:8080/"),
        ("http://example.com:/x", "http://example.com/x"),
        ("http://example.com:65535/", "http://example.com:65535/"),
        ("ftp://Files.Example.com:21/pub", "ftp://files.example.com/pub"),
        ("ftp://files.example.com:2121/pub", "ftp://files.example.com:2121/pub"),
        # IDNA host
        ("http://Bücher.example/Straße", "http://xn--bcher-kva.example/Straße"),
        ("http://xn--BCHER-kva.example/", "http://xn--bcher-kva.example/"),
        ("http://_dmarc.example.com/", "http://_dmarc.example.com/"),
        # path kept byte-exact except percent-escape case
        ("http://example.com/A/b", "http://example.com/A/b"),
        ("http://EXAMPLE.com/Path/To/FILE.EXE", "http://example.com/Path/To/FILE.EXE"),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/%7e%7Euser", "http://example.com/%7E%7Euser"),  # not decoded
        ("http://example.com/%41", "http://example.com/%41"),
        ("http://example.com/%zz%4", "http://example.com/%zz%4"),
        ("http://example.com/a//b/./../c;p=1,x", "http://example.com/a//b/./../c;p=1,x"),
        ("http://example.com/päth", "http://example.com/päth"),
        ("http://example.com/wiki/A_(dot)", "http://example.com/wiki/A_(dot)"),
        ("http://example.com/x(at)y{.}z", "http://example.com/x(at)y{.}z"),
        ("http://example.com/a\\b", "http://example.com/a\\b"),
        # query kept (escape case only), fragment dropped
        ("http://example.com/x?b=2&a=1", "http://example.com/x?b=2&a=1"),
        ("http://example.com/x?A=%2fB&c=D", "http://example.com/x?A=%2FB&c=D"),
        ("http://example.com/x?", "http://example.com/x?"),
        ("http://example.com?q", "http://example.com/?q"),
        ("http://example.com/x#Frag", "http://example.com/x"),
        ("http://example.com/x?q=1#F?g", "http://example.com/x?q=1"),
        ("http://example.com/x?#", "http://example.com/x?"),
        ("http://example.com#", "http://example.com/"),
        # userinfo kept (escape case only); an empty one is no userinfo
        ("http://User:Pa%2fss@Example.com/", "http://User:Pa%2Fss@example.com/"),
        ("http://user@example.com:80/", "http://user@example.com/"),
        ("http://a@b@example.com/", "http://a@b@example.com/"),
        ("http://@example.com/", "http://example.com/"),
        ("http://:@example.com/", "http://example.com/"),
        # IP hosts
        ("http://192.0.2.1:80/", "http://192.0.2.1/"),
        ("http://[2001:DB8::1]/", "http://[2001:db8::1]/"),
        ("http://[2001:db8:0:0:0:0:0:1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("https://u@[2001:db8::1]:443", "https://u@[2001:db8::1]/"),
        ("http://[::ffff:192.0.2.1]/", "http://192.0.2.1/"),
        # no scheme: http://
        ("example.com", "http://example.com/"),
        ("Example.com/A?b", "http://example.com/A?b"),
        ("example.com:8080", "http://example.com:8080/"),
        ("example.com:80/x", "http://example.com/x"),
        ("192.0.2.1/x", "http://192.0.2.1/x"),
        ("[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("[2001:db8::1]/x", "http://[2001:db8::1]/x"),
        ("user@example.com/x", "http://user@example.com/x"),
        ("//example.com/x", "http://example.com/x"),
        # empty path is "/" for the schemes we know; kept empty for others
        ("http://example.com", "http://example.com/"),
        ("wss://example.com", "wss://example.com/"),
        ("foo://example.com", "foo://example.com"),
        ("Foo+Bar://example.com/X", "foo+bar://example.com/X"),
        # defanged
        ("hxxp://evil[.]example/x", "http://evil.example/x"),
        ("hxxps://evil[.]example", "https://evil.example/"),
        ("HXXPS://Evil[.]Example/A", "https://evil.example/A"),
        ("hXXp[:]//evil[.]example/", "http://evil.example/"),
        ("hxxps[://]evil[dot]example/x", "https://evil.example/x"),
        ("hxxp://evil(.)example(dot)com/p", "http://evil.example.com/p"),
        ("hxxp://evil[.]example[:]8080/x", "http://evil.example:8080/x"),
        ("hxxp://evil[.]example[/]mal[.]exe", "http://evil.example/mal.exe"),
        ("evil[.]example/x", "http://evil.example/x"),
        ("fxp://files[.]example/x", "ftp://files.example/x"),
        ("hxxp://192[.]0[.]2[.]1/", "http://192.0.2.1/"),
        ("hxxp://user[at]evil[.]example/", "http://user@evil.example/"),
    ],
)
def test_url_normalisation(value: str, expected: str) -> None:
    assert normalise(Kind.URL, value) == (Kind.URL, expected)
    assert normalise_url(value) == (Kind.URL, expected)
    assert normalise_url(expected) == (Kind.URL, expected)


@pytest.mark.parametrize(
    "path",
    ["/A/b", "/a/B", "/UPPER", "/MiXeD/CaSe.PHP", "/%2F/%2f", "/~User/", "/A/b/", "/a;B=C"],
)
def test_url_path_case_is_preserved(path: str) -> None:
    _, url = normalise_url("HTTP://WWW.EXAMPLE.COM" + path)
    assert url == "http://www.example.com" + re.sub(
        r"%[0-9a-fA-F]{2}", lambda m: m.group(0).upper(), path
    )
    assert url.endswith(path.replace("%2f", "%2F"))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("http://", "without a host"),
        ("http:///path", "without a host"),
        ("http://:80/", "without a host"),
        ("http://user@/x", "without a host"),
        ("file:///etc/passwd", "without a host"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/a b", "whitespace"),
        ("http://example.com/a\u00a0b", "whitespace"),
        ("http://example.com/a\u3000b", "whitespace"),
        ("http://example.com/a\tb", "control character"),
        ("http://example.com/\x7f", "control character"),
        ("http://example.com:99999/", "port out of range"),
        ("http://example.com:65536/", "port out of range"),
        ("http://example.com:123456789012345678901234567890/", "port out of range"),
        ("http://example.com:80a/", "host or port"),
        ("http://example.com:-1/", "host or port"),
        ("http://example.com:+80/", "host or port"),
        ("http://example.com:٨٠/", "host or port"),  # Arabic-Indic digits
        ("http://example.com:80:80/", "host or port"),
        ("http://[2001:db8::1]x/", "host or port"),
        ("http://[2001:db8::1]]/", "host or port"),
        ("http://[2001:db8::1/", "not a URL"),
        ("http://[192.0.2.1]/", "not a URL"),
        ("http://[v1.fe]/", "invalid host"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://::1/", "host or port"),
        ("http://localhost/", "two labels"),
        ("http://example..com/", "empty label"),
        ("http://ex%41mple.com/", "invalid character"),
        ("http://😀.example/", "internationalised"),
        ("http://-evil.example/", "hyphen"),
        ("http://example.com\\@evil.example/", "user information"),
        ("http://010.0.0.1/", "numeric"),
        ("http://0x7f.0.0.1/", "numeric"),
        ("mailto:user@example.com", "no //authority"),
        ("javascript:alert(1)", "no //authority"),
        ("http:example.com", "no //authority"),
        ("user:pass@example.com/", "no //authority"),
        ("example.com:abc/", "no //authority"),
        ("http://example.com/[[.]]", "defanged more than once"),
        ("hxxp://evil[[.]]example/", "defanged more than once"),
    ],
)
def test_url_rejections(value: str, reason: str) -> None:
    assert reason.lower() in invalid(Kind.URL, value).lower()


def test_url_host() -> None:
    assert url_host("http://u:p@xn--bcher-kva.example:8080/x") == "xn--bcher-kva.example"
    assert url_host("http://[2001:db8::1]/") == "2001:db8::1"
    assert url_host("http://192.0.2.1/") == "192.0.2.1"
    assert url_host("not a url") is None
    assert url_host("http://[2001:db8::1/") is None  # urlsplit raises; url_host does not
    assert url_host(normalise_url("HXXP://Evil[.]Example/A")[1]) == "evil.example"


# --- hashes -----------------------------------------------------------------------------------

MD5_EMPTY = "d41d8cd98f00b204e9800998ecf8427e"
SHA1_EMPTY = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    ("kind", "digest"),
    [(Kind.MD5, MD5_EMPTY), (Kind.SHA1, SHA1_EMPTY), (Kind.SHA256, SHA256_EMPTY)],
)
def test_hash_normalisation_and_inference(kind: Kind, digest: str) -> None:
    for spelling in (digest, digest.upper(), f"  {digest.title()}\n"):
        assert normalise(kind, spelling) == (kind, digest)
        assert normalise_hash(spelling) == (kind, digest)  # inferred from the length
        assert normalise_hash(spelling, kind) == (kind, digest)
    for other in {Kind.MD5, Kind.SHA1, Kind.SHA256} - {kind}:
        assert "hex digits" in invalid(other, digest)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "g" * 32,
        "z" * 40,
        "0x" + "a" * 30,
        "a" * 31,
        "a" * 33,
        "a" * 16 + " " + "a" * 15,
        "a" * 16 + "-" + "a" * 15,
        "ａ" * 32,  # full-width
        "٠" * 32,  # Arabic-Indic zero
        MD5_EMPTY + "\x00",
        "md5:" + MD5_EMPTY,
    ],
)
def test_md5_garbage(value: str) -> None:
    invalid(Kind.MD5, value)


def test_hash_inference_refuses_other_lengths_and_non_hash_kinds() -> None:
    with pytest.raises(InvalidValue, match="no hash has 20 hex digits"):
        normalise_hash("a" * 20)
    with pytest.raises(InvalidValue, match="not a hash kind"):
        normalise_hash(MD5_EMPTY, Kind.IPV4)


# --- e-mail addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("user@example.com", "user@example.com"),
        ("Foo.Bar@Example.COM", "Foo.Bar@example.com"),  # local part kept as given
        ("First.Last+Tag@EXAMPLE.com.", "First.Last+Tag@example.com"),
        ("o'brien_x-y=z{1}@example.com", "o'brien_x-y=z{1}@example.com"),
        ("Ünïcode@Bücher.example", "Ünïcode@xn--bcher-kva.example"),
        ("user@Bücher.example", "user@xn--bcher-kva.example"),
        ("  user@example.com\r\n", "user@example.com"),
        ("mailto:User@Example.com", "User@example.com"),
        ("MAILTO:user@example.com", "user@example.com"),
        ("<user@example.com>", "user@example.com"),
        ("<mailto:user@example.com>", "user@example.com"),
        ("mailto:<user@example.com>", "user@example.com"),
        ("user[at]example[.]com", "user@example.com"),
        ("user(at)example(dot)com", "user@example.com"),
        ("user[@]example[dot]com", "user@example.com"),
        ("first(.)last[AT]example[.]com", "first.last@example.com"),
        ("a@[192.0.2.1]", "a@[192.0.2.1]"),
        ("a@[IPv6:2001:DB8::1]", "a@[IPv6:2001:db8::1]"),
        ("a@[ipv6:2001:db8:0:0::1]", "a@[IPv6:2001:db8::1]"),
        ("a@[2001:db8::1]", "a@[IPv6:2001:db8::1]"),
        ("a@[IPv6:::ffff:192.0.2.1]", "a@[192.0.2.1]"),
        # liberal about dots: such addresses are seen in mail and must match themselves
        (".a@example.com", ".a@example.com"),
        ("a..b@example.com", "a..b@example.com"),
    ],
)
def test_email_normalisation(value: str, expected: str) -> None:
    assert normalise(Kind.EMAIL, value) == (Kind.EMAIL, expected)
    assert normalise_email(value) == (Kind.EMAIL, expected)
    assert normalise_email(expected) == (Kind.EMAIL, expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("user", "not an e-mail address"),
        ("user@", "not an e-mail address"),
        ("@example.com", "not an e-mail address"),
        ("mailto:", "not an e-mail address"),
        ("a@b@example.com", "local part"),
        ("a b@example.com", "local part"),
        ("a\u00a0b@example.com", "local part"),
        ("a\u200bb@example.com", "local part"),
        ('"john doe"@example.com', "local part"),
        ("a,b@example.com", "local part"),
        ("a<b@example.com", "local part"),
        ("<user@example.com", "local part"),
        ("x" * 65 + "@example.com", "local part"),
        ("a\x01b@example.com", "control character"),
        ("user@localhost", "two labels"),
        ("user@exa mple.com", "invalid domain"),
        ("user@example.com>", "invalid domain"),
        ("user@-example.com", "hyphen"),
        ("user@192.0.2.1", "IP address"),
        ("a@[300.1.1.1]", "address literal"),
        ("a@[fe80::1%eth0]", "zone"),
        ("a@[]", "address literal"),
        ("user@example.com?subject=x", "invalid domain"),
    ],
)
def test_email_rejections(value: str, reason: str) -> None:
    assert reason.lower() in invalid(Kind.EMAIL, value).lower()


# --- refanging --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hxxp://evil.example", "http://evil.example"),
        ("hxxps://evil.example", "https://evil.example"),
        ("HXXPS://evil.example", "https://evil.example"),
        ("hXXp://evil.example", "http://evil.example"),
        ("hxxp[:]//evil.example", "http://evil.example"),
        ("hxxps[://]evil.example", "https://evil.example"),
        ("fxp://files.example", "ftp://files.example"),
        ("evil[.]example", "evil.example"),
        ("evil(.)example", "evil.example"),
        ("evil{.}example", "evil.example"),
        ("evil[dot]example", "evil.example"),
        ("evil(DOT)example", "evil.example"),
        ("user[at]evil.example", "user@evil.example"),
        ("user(at)evil.example", "user@evil.example"),
        ("user[@]evil.example", "user@evil.example"),
        ("2001:db8[:]:1", "2001:db8::1"),
        ("evil.example[/]path", "evil.example/path"),
        # nothing to do
        ("http://evil.example", "http://evil.example"),
        ("hxxpool.example", "hxxpool.example"),
        ("fxpark.example", "fxpark.example"),
        ("hxxp.example", "hxxp.example"),
        ("", ""),
    ],
)
def test_refang(value: str, expected: str) -> None:
    assert refang(value) == expected


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (Kind.URL, "hxxp://evil[.]example/a", "http://evil.example/a"),
        (Kind.URL, "hxxps://evil[.]example/a", "https://evil.example/a"),
        (Kind.DOMAIN, "evil[.]example", "evil.example"),
        (Kind.DOMAIN, "evil(.)example", "evil.example"),
        (Kind.DOMAIN, "evil[dot]example", "evil.example"),
        (Kind.EMAIL, "bad[at]evil[.]example", "bad@evil.example"),
        (Kind.IPV4, "192[.]0[.]2[.]1", "192.0.2.1"),
        (Kind.IPV6, "2001[:]db8[:][:]1", "2001:db8::1"),
        (Kind.CIDR, "192[.]0[.]2[.]0/24", "192.0.2.0/24"),
        (Kind.URL, "hxxp[:]//[2001:db8[:][:]1]/", "http://[2001:db8::1]/"),
    ],
)
def test_defanged_values_normalise(kind: Kind, value: str, expected: str) -> None:
    assert normalise(kind, value)[1] == expected


def test_hashes_are_not_refanged() -> None:
    invalid(Kind.MD5, "d41d8cd98f00b204[.]e9800998ecf8427e")


# --- garbage, for every kind ------------------------------------------------------------------

VALID_SAMPLE = {
    Kind.IPV4: "192.0.2.1",
    Kind.IPV6: "2001:db8::1",
    Kind.CIDR: "192.0.2.0/24",
    Kind.DOMAIN: "example.com",
    Kind.URL: "http://example.com/a",
    Kind.EMAIL: "user@example.com",
    Kind.MD5: MD5_EMPTY,
    Kind.SHA1: SHA1_EMPTY,
    Kind.SHA256: SHA256_EMPTY,
    Kind.OTHER: "Global\\Mutex",
}

GARBAGE = [
    "",
    " ",
    "\t\r\n  \n",
    "\u3000\u00a0",  # Unicode spaces only
    "\x00",
    "\x00\x00\x00",
    "\x07",
    "\x1b[2J",
    "\x7f",
    "\x9b",  # C1 control (CSI)
    "\x85",  # NEL
]


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("value", GARBAGE, ids=repr)
def test_garbage_is_rejected_for_every_kind(kind: Kind, value: str) -> None:
    invalid(kind, value)


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x1b", "\x1f", "\x7f", "\x9f"], ids=repr)
def test_control_characters_are_rejected_for_every_kind(kind: Kind, char: str) -> None:
    sample = VALID_SAMPLE[kind]
    assert normalise(kind, sample)  # the sample itself is fine
    middle = len(sample) // 2
    for value in (sample[:middle] + char + sample[middle:], sample + char, char + sample):
        reason = invalid(kind, value)
        assert "NUL" in reason or "control character" in reason


@pytest.mark.parametrize("kind", [k for k in ALL_KINDS if k is not Kind.OTHER])
@pytest.mark.parametrize("char", ["\t", "\n", "\r", "\x0b", "\x0c"], ids=repr)
def test_line_breaks_inside_a_value_are_rejected(kind: Kind, char: str) -> None:
    sample = VALID_SAMPLE[kind]
    assert normalise(kind, char + sample + char) == normalise(kind, sample)  # edges: stripped
    middle = len(sample) // 2
    invalid(kind, sample[:middle] + char + sample[middle:])


def _huge_values(kind: Kind) -> list[str]:
    sample = VALID_SAMPLE[kind]
    megabyte = 1_000_000
    return [
        "a" * megabyte,
        "1" * megabyte,
        "[" * megabyte,
        "[.]" * (megabyte // 3),
        sample + "a" * megabyte,
        "a" * megabyte + sample,
        (sample + " ") * (megabyte // len(sample)),
        "x" * (MAX_VALUE_LENGTH + 1),
    ]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_huge_values_are_rejected_fast_with_a_short_reason(kind: Kind) -> None:
    for value in _huge_values(kind):
        # "too long" proves the size check ran before any other work.
        with pytest.raises(InvalidValue) as info:
            normalise(kind, value)
        reason = str(info.value)
        assert reason
        assert "too long" in reason
        assert len(reason) < 200


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_long_values_under_the_limit_quote_the_value_cut_short(kind: Kind) -> None:
    """Just under the size limit, every kind answers and quotes the value cut short.

    (Speed is the benchmarks' business; this checks the answers, pathological inputs included.)
    """
    n = MAX_VALUE_LENGTH - 100
    candidates = [
        "a" * n,
        "a." * (n // 2) + "com",
        "[.]" * (n // 3),
        "(.(" * (n // 3),
        "[" * (n // 2) + "." + "]" * (n // 2 - 1),
        "1" * n,
        "http://example.com:" + "9" * (n - 30) + "/",
        "http://" + "a@" * (n // 2 - 10) + "example.com/",
        "x" * (n - 20) + "@example.com",
        "f" * n,
        "::" + "1:" * (n // 2 - 2),
    ]
    for value in candidates:
        try:
            normalise(kind, value)
        except InvalidValue as exc:
            reason = str(exc)
            assert reason
            assert len(reason) <= REASON_LIMIT, reason[:500]
            assert value not in reason


def test_a_long_valid_url_is_kept_whole() -> None:
    path = "/" + "A" * (MAX_VALUE_LENGTH - 100)
    assert normalise_url("http://example.com" + path) == (Kind.URL, "http://example.com" + path)


def test_reasons_quote_values_cut_short() -> None:
    value = "http://" + "x" * 900 + "!.example/"
    reason = invalid(Kind.URL, value)
    assert "…" in reason
    assert "x" * 200 not in reason


# --- properties (hypothesis) ------------------------------------------------------------------

_ascii_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?", fullmatch=True).filter(
    lambda s: s[2:4] != "--"
)
_underscore_label = st.from_regex(r"_[a-z0-9]{1,12}", fullmatch=True)
_LATIN = "abcdefghijklmnopqrstuvwxyz0123456789àáâãäåæçèéêëìíîïñòóôõöøùúûüýþ"
_unicode_label = st.text(alphabet=_LATIN, min_size=1, max_size=15).filter(lambda s: not s.isascii())
_tld = st.from_regex(r"[a-z]{2,10}", fullmatch=True)


@st.composite
def domains(draw: st.DrawFn, underscores: bool = True) -> tuple[str, str]:
    """(a domain as a feed may spell it, its canonical form)."""
    kinds = [_ascii_label, _unicode_label] + ([_underscore_label] if underscores else [])
    label = st.one_of(kinds)
    labels = [*draw(st.lists(label, min_size=1, max_size=4)), draw(_tld)]
    canonical = ".".join(
        lab if lab.isascii() else idna.encode(lab, uts46=True).decode("ascii") for lab in labels
    )
    spelled = ".".join(labels)
    if draw(st.booleans()):
        spelled = spelled.upper()
    if draw(st.booleans()):
        spelled += "."
    return spelled, canonical


@PROPERTY
@given(domains())
def test_domain_property(pair: tuple[str, str]) -> None:
    spelled, canonical = pair
    assert normalise(Kind.DOMAIN, spelled) == (Kind.DOMAIN, canonical)
    assert normalise(Kind.DOMAIN, canonical) == (Kind.DOMAIN, canonical)
    assert canonical.isascii() and canonical == canonical.lower()
    for label in canonical.split("."):
        if label.startswith("xn--"):
            assert idna.alabel(idna.decode(label)).decode() == label


def _rfc5952(addr: ipaddress.IPv6Address) -> str:
    """Reference text of RFC 5952 section 4, written independently of ipaddress."""
    groups = [(int(addr) >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_len, i = -1, 0, 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    text = [format(g, "x") for g in groups]
    if best_len < 2:
        return ":".join(text)
    return ":".join(text[:best_start]) + "::" + ":".join(text[best_start + best_len :])


@PROPERTY
@given(st.ip_addresses(v=4))
def test_ipv4_property(addr: ipaddress.IPv4Address) -> None:
    assert normalise(Kind.IPV4, str(addr)) == (Kind.IPV4, str(addr))
    assert normalise(Kind.IPV6, f"::ffff:{addr}") == (Kind.IPV4, str(addr))
    assert normalise(Kind.CIDR, f"{addr}/32") == (Kind.IPV4, str(addr))


@PROPERTY
@given(
    st.one_of(
        st.ip_addresses(v=6),
        st.ip_addresses(network="::ffff:0:0/96"),
        st.ip_addresses(network="2001:db8::/120"),
        st.ip_addresses(network="::/112"),
    )
)
def test_ipv6_property(addr: ipaddress.IPv6Address) -> None:
    if addr.ipv4_mapped is not None:
        expected = (Kind.IPV4, str(addr.ipv4_mapped))
    else:
        expected = (Kind.IPV6, _rfc5952(addr))
    for spelling in (str(addr), addr.exploded, addr.exploded.upper(), str(addr).upper()):
        assert normalise(Kind.IPV6, spelling) == expected
        assert normalise(Kind.IPV4, spelling) == expected
    assert normalise(*expected) == expected
    assert normalise(Kind.URL, f"http://[{addr.exploded.upper()}]:80/") == (
        Kind.URL,
        f"http://{expected[1] if expected[0] is Kind.IPV4 else '[' + expected[1] + ']'}/",
    )


@PROPERTY
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.data())
def test_cidr_property(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address, data: st.DataObject
) -> None:
    bits = addr.max_prefixlen
    prefix = data.draw(st.integers(min_value=0, max_value=bits))
    net = ipaddress.ip_network((addr, prefix), strict=False)
    spelled = f"{net.network_address.exploded.upper()}/{prefix}"
    result = normalise(Kind.CIDR, spelled)
    if (
        isinstance(net, ipaddress.IPv6Network)
        and prefix >= 96
        and net.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96"))
    ):
        net4 = ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, prefix - 96))
        if prefix == 128:
            expected = (Kind.IPV4, str(net4.network_address))
        else:
            expected = (Kind.CIDR, str(net4))
    elif prefix == bits:
        expected = normalise_ip(str(net.network_address))
    else:
        expected = (Kind.CIDR, str(net))
    assert result == expected
    assert normalise(*result) == result
    if net.network_address != addr:
        assert "host bits" in invalid(Kind.CIDR, f"{addr}/{prefix}")


@PROPERTY
@given(st.data())
def test_ip_range_property(data: st.DataObject) -> None:
    version = data.draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    lo = data.draw(st.integers(min_value=0, max_value=2**bits - 1))
    span = data.draw(
        st.one_of(
            st.integers(min_value=0, max_value=2**20),
            st.integers(min_value=0, max_value=2**bits - 1 - lo),
        ).filter(lambda n: lo + n < 2**bits)
    )
    hi = lo + span
    first: ipaddress.IPv4Address | ipaddress.IPv6Address
    last: ipaddress.IPv4Address | ipaddress.IPv6Address
    if version == 4:
        first, last = ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi)
    else:
        first, last = ipaddress.IPv6Address(lo), ipaddress.IPv6Address(hi)
        if first.ipv4_mapped is not None or last.ipv4_mapped is not None:
            return  # those are IPv4 addresses: see test_ip_range_to_minimal_networks
    expected = _as_pairs(lo, hi, version)
    if len(expected) > 64:
        with pytest.raises(InvalidValue, match="limit 64"):
            normalise_ip_range(str(first), str(last))
        return
    result = normalise_ip_range(first.exploded, last.exploded)
    assert result == expected
    # exact cover: contiguous blocks from lo to hi
    position = lo
    for _kind, text in result:
        net = ipaddress.ip_network(text)
        assert int(net.network_address) == position
        position += net.num_addresses
    assert position == hi + 1
    if lo != hi:
        with pytest.raises(InvalidValue, match="backwards"):
            normalise_ip_range(str(last), str(first))


_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_SUB_DELIMS = "!$&'()*+,;="
_pct = st.from_regex(r"%[0-9a-fA-F]{2}", fullmatch=True)
_segment = st.lists(
    st.one_of(st.text(alphabet=_UNRESERVED + _SUB_DELIMS + ":@", min_size=1, max_size=6), _pct),
    max_size=4,
).map("".join)
_path = st.lists(_segment, max_size=4).map(lambda segs: "".join("/" + s for s in segs))
_query = st.lists(
    st.one_of(st.text(alphabet=_UNRESERVED + _SUB_DELIMS + ":@/?", max_size=8), _pct),
    max_size=4,
).map("".join)
_userinfo = (
    st.lists(
        st.one_of(st.text(alphabet=_UNRESERVED + "!$&'*+,;=:", min_size=1, max_size=6), _pct),
        min_size=1,
        max_size=3,
    )
    .map("".join)
    .filter(lambda s: s != ":")
)
_DEFAULTS = {"http": 80, "https": 443, "ftp": 21}


def _upper_escapes(text: str) -> str:
    return re.sub(r"%[0-9a-fA-F]{2}", lambda m: m.group(0).upper(), text)


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str]:
    """(a URL built from parts, as a feed may spell it; its canonical form)."""
    scheme = draw(st.sampled_from(["http", "https", "ftp"]))
    spelled_scheme = draw(st.sampled_from([scheme, scheme.upper(), scheme.capitalize()]))
    host_kind = draw(st.sampled_from(["domain", "ipv4", "ipv6"]))
    if host_kind == "domain":
        spelled_host, host = draw(domains())
        spelled_host = spelled_host.rstrip(".")
    elif host_kind == "ipv4":
        addr4 = draw(st.ip_addresses(v=4))
        spelled_host = host = str(addr4)
    else:
        addr6 = draw(st.ip_addresses(v=6))
        assert isinstance(addr6, ipaddress.IPv6Address)
        spelled_host = f"[{addr6.exploded}]"
        host = str(addr6.ipv4_mapped) if addr6.ipv4_mapped else f"[{addr6}]"
    userinfo = draw(st.none() | _userinfo)
    port = draw(st.none() | st.just(_DEFAULTS[scheme]) | st.integers(0, 65535))
    path = draw(_path)
    query = draw(st.none() | _query)
    fragment = draw(st.none() | _query)
    spelled = f"{spelled_scheme}://"
    canonical = f"{scheme}://"
    if userinfo is not None:
        spelled += userinfo + "@"
        canonical += _upper_escapes(userinfo) + "@"
    spelled += spelled_host
    canonical += host
    if port is not None:
        spelled += f":{port}"
        if port != _DEFAULTS[scheme]:
            canonical += f":{port}"
    spelled += path
    canonical += _upper_escapes(path) or "/"
    if query is not None:
        spelled += "?" + query
        canonical += "?" + _upper_escapes(query)
    if fragment is not None:
        spelled += "#" + fragment
    return spelled, canonical


@PROPERTY
@given(urls())
def test_url_property(pair: tuple[str, str]) -> None:
    spelled, canonical = pair
    assert normalise(Kind.URL, spelled) == (Kind.URL, canonical)
    assert normalise(Kind.URL, canonical) == (Kind.URL, canonical)


@PROPERTY
@given(_path.filter(bool), st.sampled_from(["http", "https"]))
def test_url_path_is_byte_exact_property(path: str, scheme: str) -> None:
    _, url = normalise_url(f"{scheme.upper()}://Example.COM{path}")
    assert url == f"{scheme}://example.com{_upper_escapes(path)}"
    # only escape case may change: everything outside %XX is the same byte for byte
    assert re.sub(r"%[0-9a-fA-F]{2}", "%", url) == re.sub(
        r"%[0-9a-fA-F]{2}", "%", f"{scheme}://example.com{path}"
    )


_atext = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
# "{.}" is a defanged dot wherever it stands (refang), so a local part spelling it is read
# with a dot: the property is about local parts that say what they are.
_local = (
    st.lists(st.text(alphabet=_atext, min_size=1, max_size=10), min_size=1, max_size=3)
    .map(".".join)
    .filter(lambda local: "{.}" not in local)
)


@PROPERTY
@given(_local, domains(underscores=False), st.sampled_from(["{}", "mailto:{}", "<{}>", " {} "]))
def test_email_property(local: str, domain: tuple[str, str], wrapper: str) -> None:
    spelled_domain, canonical_domain = domain
    value = wrapper.format(f"{local}@{spelled_domain}")
    expected = (Kind.EMAIL, f"{local}@{canonical_domain}")
    assert normalise(Kind.EMAIL, value) == expected
    assert normalise(*expected) == expected


@PROPERTY
@given(st.binary(max_size=64), st.sampled_from(["md5", "sha1", "sha256"]), st.booleans())
def test_hash_property(data: bytes, algorithm: str, upper: bool) -> None:
    digest = hashlib.new(algorithm, data).hexdigest()
    spelled = digest.upper() if upper else digest
    kind = Kind(algorithm)
    assert normalise(kind, spelled) == (kind, digest)
    assert normalise_hash(spelled) == (kind, digest)
    assert normalise(kind, digest) == (kind, digest)


_fuzz_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list("abcxn-.:/@[]()%0123456789fF?#_ \t<>\\Ü😀\u3002"))),
    st.lists(
        st.sampled_from(
            [
                *("http://", "hxxp", "[.]", "(.)", "[:]", "[at]", "xn--", "::", "ffff:", "%2f"),
                *("/", "?", "#", "@", "[", "]", "example", "com", "1", "0", ".", ":", "Bücher"),
                "192.0.2.1",
            ]
        ),
        max_size=12,
    ).map("".join),
)


@pytest.mark.parametrize("kind", ALL_KINDS)
@PROPERTY
@given(value=_fuzz_text)
def test_any_text_returns_or_raises_invalid_value(kind: Kind, value: str) -> None:
    try:
        result_kind, result = normalise(kind, value)
    except InvalidValue as exc:
        assert str(exc).strip()
        assert len(str(exc)) <= REASON_LIMIT
        return
    # whatever comes out is clean and stable: normalising it again changes nothing
    assert isinstance(result_kind, Kind)
    assert result and result == result.strip()
    if result_kind is Kind.OTHER:  # multi-line values (YARA rules) keep tab, LF and CR
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", result)
    else:
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\s]", result)
    assert normalise(result_kind, result) == (result_kind, result)


@PROPERTY
@given(_fuzz_text, _fuzz_text)
def test_any_text_range_returns_or_raises_invalid_value(first: str, last: str) -> None:
    try:
        normalise_ip_range(first, last)
    except InvalidValue as exc:
        assert str(exc).strip()


FUNCTIONS: list[Callable[[str], object]] = [
    normalise_ip,
    normalise_cidr,
    normalise_domain,
    normalise_url,
    normalise_email,
    normalise_hash,
    refang,
    url_host,
]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
@PROPERTY
@given(value=st.text())
def test_public_functions_raise_only_invalid_value(
    function: Callable[[str], object], value: str
) -> None:
    with contextlib.suppress(InvalidValue):
        function(value)


# --- Observable -------------------------------------------------------------------------------


def test_observable_to_dict() -> None:
    obs = Observable(Kind.DOMAIN, "evil.example")
    assert obs.to_dict() == {"kind": "domain", "value": "evil.example"}
    assert type(obs.to_dict()["kind"]) is str

    ctx = {"package_id": "pulse-1", "title": "Bad domains", "tlp": "green", "confidence": 80}
    obs = Observable(Kind.URL, "http://evil.example/", None, ctx)
    assert obs.to_dict() == {"kind": "url", "value": "http://evil.example/", **ctx}
    assert list(obs.to_dict())[:2] == ["kind", "value"]


def test_observable_to_dict_other_keeps_its_original_type() -> None:
    obs = Observable(Kind.OTHER, "Global\\Mutex", "MutexObjectType", {"title": "t"})
    assert obs.to_dict() == {
        "kind": "other",
        "value": "Global\\Mutex",
        "type": "MutexObjectType",
        "title": "t",
    }


def test_observable_to_dict_identity_wins_over_context() -> None:
    ctx = {"kind": "url", "value": "spoofed", "type": "Spoof", "title": "t"}
    obs = Observable(Kind.DOMAIN, "evil.example", "DomainNameObjectType", ctx)
    assert obs.to_dict() == {
        "kind": "domain",
        "value": "evil.example",
        "type": "DomainNameObjectType",
        "title": "t",
    }
    # without an original type, a context "type" is just context
    assert Observable(Kind.DOMAIN, "evil.example", None, {"type": "FQDN"}).to_dict()["type"] == (
        "FQDN"
    )


def test_observable_is_frozen_and_to_dict_is_a_copy() -> None:
    obs = Observable(Kind.IPV4, "192.0.2.1", None, {"title": "t"})
    with pytest.raises(AttributeError):
        obs.value = "192.0.2.2"  # type: ignore[misc]
    out = obs.to_dict()
    out["title"] = "changed"
    assert obs.context["title"] == "t"
    assert Observable(Kind.IPV4, "192.0.2.1").context == {}


# --- contexts as stored ----------------------------------------------------------------------


def test_context_json_is_the_standard_librarys_json() -> None:
    import datetime
    import json

    from feedgate.observables import EncodedContext, context_json

    context = {
        "b": 1,
        "a": "caf\u00e9 \u2603",
        "when": datetime.datetime(2026, 11, 1, 12, 0),
        "tags": ["x", None, True, 1.5],
    }
    text = context_json(context)
    assert list(json.loads(text)) == ["b", "a", "when", "tags"]  # the context's order
    assert json.loads(text) == json.loads(json.dumps(context, default=str, ensure_ascii=False))
    # Text orjson refuses (a lone surrogate, as a STIX 2 "\ud800" escape gives) still encodes.
    odd = {"title": "bad \ud800 text"}
    assert json.loads(context_json(odd)) == odd
    # A context a parse worker already encoded is not encoded again, and reads as a mapping.
    encoded = EncodedContext(context_json(context))
    assert context_json(encoded) is encoded.json
    assert dict(encoded) == json.loads(text) and list(encoded) == ["b", "a", "when", "tags"]
    assert encoded.get("b") == 1 and encoded.get("x") is None and len(encoded) == 4
    assert encoded == json.loads(text)
    assert dict(EncodedContext(context_json(odd))) == odd


def test_layered_context_reads_as_the_merged_dict() -> None:
    import json
    import pickle

    from feedgate.observables import EncodedContext, LayeredContext, context_json, context_value

    shared = {"package_id": "p-1", "package_title": "pulse", "tlp": "white"}
    own = {"indicator_id": "i-1", "tlp": "amber", "valid_until": "2027-01-01T00:00:00Z"}
    merged = {**shared, **own}
    layered = LayeredContext(shared, own)
    # the indicator's keys win, in the order {**shared, **own} gives
    assert dict(layered) == merged and list(layered) == list(merged)
    assert layered == merged and len(layered) == len(merged) == 5
    assert layered["tlp"] == "amber" and "package_title" in layered and "x" not in layered
    assert context_json(layered) == context_json(merged)
    assert json.loads(context_json(LayeredContext(shared, {}))) == shared
    assert pickle.loads(pickle.dumps(layered)) == merged
    assert bool(LayeredContext({}, {})) is False and bool(LayeredContext({}, {"a": 1}))
    # looked up without decoding a layer that cannot hold the key; the own layer wins
    encoded = LayeredContext(
        EncodedContext(context_json(shared)), EncodedContext(context_json(own))
    )
    assert context_value(encoded, "valid_until") == "2027-01-01T00:00:00Z"
    assert context_value(encoded, "tlp") == "amber"
    assert context_value(encoded, "package_title") == "pulse"
    assert context_value(encoded, "nothing") is None
    assert context_value(LayeredContext({"k": 1}, {"k": None}), "k") is None


def test_a_defanged_dot_in_an_email_local_part_is_a_dot() -> None:
    """What test_email_property leaves out of its local parts: "{.}" is read as a defanged dot."""
    assert normalise(Kind.EMAIL, "first{.}last@example.com") == (
        Kind.EMAIL,
        "first.last@example.com",
    )

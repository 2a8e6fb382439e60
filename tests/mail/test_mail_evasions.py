"""URL spellings that lead a browser where a stored URL, domain or IP is, although the text
differs: user information before the host, a redirector's percent-encoded target (Outlook Safe
Links, Google, Proofpoint), a tab or newline inside an href, an IPv4 host written as one
number, in hex or octal, and defanged dots. Each is offered in the store's form, and each
catches a message end to end through a Scanner over a real store."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from mail_helpers import skipped_text, urls, values
from test_matcher import obs, poll

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail import limits
from feedgate.mail._urls import ipv4_number
from feedgate.mail.inspect import inspect_message
from feedgate.mail.model import Lookup, Part
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.scanner import Scanner
from feedgate.observables import Kind


def _text(body: str) -> bytes:
    message = EmailMessage()
    message["From"] = "friend@example.org"
    message["Subject"] = "hello"
    message.set_content(body)
    return message.as_bytes()


def _html(html: str) -> bytes:
    message = EmailMessage()
    message["From"] = "friend@example.org"
    message.set_content("see the HTML part")
    message.add_alternative(html, subtype="html")
    return message.as_bytes()


# --- 1. user information -------------------------------------------------------------------


def test_userinfo_is_offered_with_and_without() -> None:
    result = inspect_message(
        _text("log in: https://paypal.com@Evil.example/login or https://u:pw@host.example/p\n")
    )
    assert urls(result) == [
        "https://paypal.com@evil.example/login",
        "https://evil.example/login",
        "https://u:pw@host.example/p",
        "https://host.example/p",
    ]
    assert values(result, Part.URL, Lookup.DOMAIN) == ["evil.example", "host.example"]
    bare = next(o for o in result.offers if o.value == "https://evil.example/login")
    assert bare.seen == "https://paypal.com@Evil.example/login"  # the text as it was


def test_a_decoded_target_is_seen_as_the_link_in_the_message() -> None:
    link = "https://www.google.com/url?q=https%3A%2F%2Fbad.example%2Fx&sa=D"
    result = inspect_message(_text(f"{link}\n"))
    target = next(o for o in result.offers if o.value == "https://bad.example/x")
    assert target.seen == link


def test_defanged_userinfo_separator() -> None:
    result = inspect_message(_text("hxxps://paypal.com[at]evil[.]example/login\n"))
    assert "https://evil.example/login" in urls(result)


# --- 2. percent-encoded redirect targets ---------------------------------------------------


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("https://r.example.net/?u=https%3A%2F%2Fbad.example%2Fx.php", "https://bad.example/x.php"),
        (
            "https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fbad.example"
            "%2Fx.php%3Fid%3D7&data=05%7C01%7Cuser%40example.org%7C&sdata=abc%3D&reserved=0",
            "https://bad.example/x.php?id=7",
        ),
        (
            "https://www.google.com/url?q=https%3A%2F%2Fbad.example%2Fx&sa=D&ust=1700000000",
            "https://bad.example/x",
        ),
        # encoded twice: decoded twice
        (
            "https://r.example.net/?u=https%253A%252F%252Fbad.example%252Fx.php",
            "https://bad.example/x.php",
        ),
        # Proofpoint URL Defense v2: "-XX" for "%XX", "_" for "/"
        (
            "https://urldefense.proofpoint.com/v2/url?u=https-3A__bad.example_x.php-3Fa-3D1"
            "&d=DwMFaQ&c=abc&r=def&m=ghi&s=jkl&e=",
            "https://bad.example/x.php?a=1",
        ),
        # a Safe Link to a redirector to the target: each level decoded in turn
        (
            "https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fr.example.net"
            "%2F%3Fu%3Dhttps%253A%252F%252Fbad.example%252Fx.php&data=05",
            "https://bad.example/x.php",
        ),
    ],
)
def test_encoded_redirect_targets_are_offered(link: str, target: str) -> None:
    result = inspect_message(_text(f"click {link} now\n"))
    offered = urls(result)
    assert offered[0].startswith("https://") and target in offered
    assert "bad.example" in values(result, Part.URL, Lookup.DOMAIN)


def test_encoded_targets_in_html_hrefs() -> None:
    href = "https://www.google.com/url?q=https%3A%2F%2Fbad.example%2Fx&amp;sa=D"
    result = inspect_message(_html(f'<a href="{href}">x</a>'))
    assert "https://bad.example/x" in urls(result)


def test_a_query_without_urls_offers_only_itself() -> None:
    link = "https://shop.example.com/search?q=caf%C3%A9%20cr%C3%A8me&n=100%25"
    assert urls(inspect_message(_text(f"{link}\n"))) == [link]


def test_encoded_targets_count_against_the_embedded_limit() -> None:
    target = "https%3A%2F%2Fbad{n}.example%2F"
    query = "&".join(f"u{n}={target.format(n=n)}" for n in range(limits.MAX_EMBEDDED_URLS + 5))
    result = inspect_message(_text(f"https://r.example.net/?{query}\n"))
    assert len(urls(result)) == 1 + limits.MAX_EMBEDDED_URLS
    assert f"more than {limits.MAX_EMBEDDED_URLS} URLs" in skipped_text(result)


# --- 3. tab and newline inside an attribute ------------------------------------------------


def test_tab_and_newline_inside_href_are_stripped() -> None:
    html = (
        '<a href="https://bad.exa\nmple/x.php">one</a>'
        "<a href='https://bad2.\texample/y'>two</a>"
        '<img src="//cdn.ex\r\nample.org/p.png">'
        '<a href="https://bad3.example/&#10;z">three</a>'
        '<a HREF = "https:/\n/bad4.example/w">four</a>'
    )
    offered = urls(inspect_message(_html(html)))
    for url in (
        "https://bad.example/x.php",
        "https://bad2.example/y",
        "http://cdn.example.org/p.png",
        "https://bad3.example/z",
        "https://bad4.example/w",
    ):
        assert url in offered


def test_other_attributes_with_line_breaks_are_no_urls() -> None:
    html = '<img alt="https://shown.exa\nmple/" title="https://b.\texample/c">'
    offered = urls(inspect_message(_html(html)))
    assert "https://shown.example/" not in offered and "https://b.example/c" not in offered


# --- 4. numeric IPv4 hosts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "dotted"),
    [
        ("3325256867", "198.51.100.163"),
        ("0xC6336423", "198.51.100.35"),
        ("0306.0063.0144.0243", "198.51.100.163"),
        ("198.51.0x64.043", "198.51.100.35"),
        ("198.51.25635", "198.51.100.35"),
        ("0x7f.1", "127.0.0.1"),
        ("3325256867.", "198.51.100.163"),
    ],
)
def test_ipv4_number_reads_hosts_as_browsers_do(host: str, dotted: str) -> None:
    assert ipv4_number(host) == dotted


@pytest.mark.parametrize(
    "host", ["4294967296", "256.1.1.1", "1..2", "1.2.3.4.5", "08", "0xg1", "deadbeef", "1.2.3.256"]
)
def test_ipv4_number_refuses_what_is_no_address(host: str) -> None:
    assert ipv4_number(host) is None


def test_numeric_hosts_offer_the_dotted_address() -> None:
    body = "http://3325256867/ and hxxp://0xC6336423/a.exe and http://u@0306.0063.0144.0243:8080/\n"
    result = inspect_message(_text(body))
    assert values(result, Part.URL, Lookup.IP) == ["198.51.100.163", "198.51.100.35"]
    assert urls(result) == [
        "http://198.51.100.163/",
        "http://198.51.100.35/a.exe",
        "http://u@198.51.100.163:8080/",
        "http://198.51.100.163:8080/",
    ]


def test_numbers_that_are_no_address_offer_nothing() -> None:
    assert urls(inspect_message(_text("http://4294967296/ http://1.2.3.4.5/\n"))) == []


# --- 5. defanged dots ----------------------------------------------------------------------


def test_defanged_dots_in_bare_hosts() -> None:
    body = "Bad: evil[dot]example/login, evil2(dot)example/x, evil3(.)example and evil4{.}example\n"
    offered = urls(inspect_message(_text(body)))
    assert offered == [
        "http://evil.example/login",
        "http://evil2.example/x",
        "http://evil3.example/",
        "http://evil4.example/",
    ]


def test_parentheses_in_prose_are_no_defanging() -> None:
    body = "See Wikipedia's A_(dot) article (dot) and f(x) = y.\n"
    assert urls(inspect_message(_text(body))) == []


SAFE_LINK = (
    "https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fbad.example%2Fx.php"
    "&data=05%7C01"
)
PROOFPOINT = "https://urldefense.proofpoint.com/v2/url?u=https-3A__bad.example_x.php&d=D"

# --- end to end ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedStore]:
    store = FeedStore(engine(str(tmp_path / "feeds.db")))
    store.add_source(Source(name="otx", hostname="otx.example", collection="user_AV"))
    yield store
    store.close()


@pytest.mark.parametrize(
    ("kind", "stored", "raw", "seen"),
    [
        (
            Kind.URL,
            "https://evil.example/login",
            _text("https://paypal.com@evil.example/login\n"),
            "https://paypal.com@evil.example/login",
        ),
        (
            Kind.URL,
            "https://bad.example/x.php",
            _text(f"{SAFE_LINK}\n"),
            SAFE_LINK,
        ),
        (
            Kind.URL,
            "https://bad.example/x.php",
            _text(f"{PROOFPOINT}\n"),
            PROOFPOINT,
        ),
        (
            Kind.URL,
            "https://bad.example/x.php",
            _html('<a href="https://bad.exa\nmple/x.php">x</a>'),
            "https://bad.example/x.php",
        ),
        (Kind.IPV4, "198.51.100.35", _text("http://0xC6336423/\n"), "http://0xC6336423/"),
        (
            Kind.URL,
            "http://evil.example/login",
            _text("evil[dot]example/login\n"),
            "evil[dot]example/login",
        ),
    ],
)
def test_each_evasion_is_caught_through_the_scanner(
    store: FeedStore, kind: Kind, stored: str, raw: bytes, seen: str
) -> None:
    scanner = Scanner(store, PolicyStore(store.engine, store.source_names), log=False)
    assert scanner.scan(raw).action == "deliver"  # nothing stored yet
    poll(store, obs(kind, stored, "evasion"))
    scanner.matcher.refresh()
    verdict = scanner.scan(raw)
    assert verdict.action == "quarantine"
    assert [(m.part, m.kind, m.value, m.seen) for m in verdict.matches] == [
        ("url", str(kind), stored, seen)
    ]

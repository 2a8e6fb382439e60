"""``feedgate.mail.xforward``: reading XFORWARD commands as Postfix's XFORWARD_README writes
them, and writing them for the next server."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedgate.mail.xforward import (
    DEFAULT_TRUSTED,
    EHLO_LINE,
    Forwarded,
    XforwardError,
    commands,
    parse,
    parse_networks,
    trusted,
    xtext_decode,
    xtext_encode,
)


def test_postfix_s_two_commands_give_every_attribute() -> None:
    first = parse("NAME=mail.sender.test ADDR=192.0.2.55 PORT=40123")
    second = parse("PROTO=ESMTP HELO=mail.sender.test IDENT=4Xb1c2D3 SOURCE=REMOTE")
    got = Forwarded().updated(first).updated(second)
    assert got == Forwarded(
        name="mail.sender.test",
        addr="192.0.2.55",
        port="40123",
        proto="ESMTP",
        helo="mail.sender.test",
        ident="4Xb1c2D3",
        source="REMOTE",
        given=frozenset(EHLO_LINE.split()[1:]),
    )
    assert got.replaces_client


def test_names_are_case_insensitive_and_unavailable_is_none_in_any_case() -> None:
    assert parse("addr=[Unavailable] Name=[UNAVAILABLE] ident=[unavailable]") == {
        "ADDR": None,
        "NAME": None,
        "IDENT": None,
    }
    assert parse("source=local") == {"SOURCE": "LOCAL"}


def test_ipv6_with_postfix_s_prefix_bare_and_ipv4_mapped() -> None:
    assert parse("ADDR=IPV6:2001:DB8::55") == {"ADDR": "2001:db8::55"}
    assert parse("ADDR=IPv6:2001:db8:0:0::55") == {"ADDR": "2001:db8::55"}
    assert parse("ADDR=2001:db8::55") == {"ADDR": "2001:db8::55"}  # Postfix's smtpd: 501
    assert parse("ADDR=IPv6:::ffff:192.0.2.55") == {"ADDR": "192.0.2.55"}


def test_values_are_xtext_and_a_pre_2_3_plain_value_is_taken_as_it_is() -> None:
    assert parse("HELO=a+2Bb+3Dc IDENT=x+2by") == {"HELO": "a+b=c", "IDENT": "x+y"}
    assert parse("HELO=plus+sign") == {"HELO": "plus+sign"}  # not xtext: Postfix < 2.3
    assert xtext_decode("a+2") is None and xtext_decode("a+zz") is None


@given(st.text(min_size=1, max_size=60))
def test_xtext_encoding_reads_back_and_stays_in_xtext_s_alphabet(value: str) -> None:
    encoded = xtext_encode(value)
    assert all("!" <= c <= "~" and c != "=" for c in encoded)
    decoded = xtext_decode(encoded)
    assert decoded is not None
    assert decoded.encode("latin-1") == value.encode()


@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        (None, "501 5.5.4 Syntax: XFORWARD attribute=value..."),
        ("   ", "501 5.5.4 Syntax: XFORWARD attribute=value..."),
        ("ADDR", "501 5.5.4 Error: attribute=value expected"),
        ("ADDR=", "501 5.5.4 Error: attribute=value expected"),
        ("NAME=" + "a" * 256, "501 5.5.4 Error: attribute value too long"),
        ("COLOR=blue", "501 5.5.4 Bad XFORWARD attribute name: COLOR"),
        ("ADDR=999.0.2.1", "501 5.5.4 Bad ADDR syntax: 999.0.2.1"),
        ("ADDR=[192.0.2.1]", "501 5.5.4 Bad ADDR syntax: [192.0.2.1]"),
        ("ADDR=mail.sender.test", "501 5.5.4 Bad ADDR syntax: mail.sender.test"),
        ("PORT=70000", "501 5.5.4 Bad PORT syntax: 70000"),
        ("PORT=25a", "501 5.5.4 Bad PORT syntax: 25a"),
        ("PROTO=" + "P" * 65, "501 5.5.4 Bad PROTO syntax: " + "P" * 65),
        ("NAME=bad..name", "501 5.5.4 Bad NAME syntax: bad..name"),
        ("NAME=sp+20ace", "501 5.5.4 Bad NAME syntax: sp?ace"),
        ("HELO=a+0Db", "501 5.5.4 Bad HELO syntax: a?b"),
        ("HELO=caf\u00e9", "501 5.5.4 Bad HELO syntax: caf?"),
        ("IDENT=+C3+A9", "501 5.5.4 Bad IDENT syntax: ??"),
        ("SOURCE=ELSEWHERE", "501 5.5.4 Bad SOURCE syntax: ELSEWHERE"),
        ("ADDR=192.0.2.55 PORT=x", "501 5.5.4 Bad PORT syntax: x"),
    ],
)
def test_bad_commands_get_501_saying_what(arg: str | None, reply: str) -> None:
    with pytest.raises(XforwardError) as refused:
        parse(arg)
    assert refused.value.reply == reply


def test_a_client_attribute_replaces_the_session_s_ident_and_source_do_not() -> None:
    assert not Forwarded().updated(parse("IDENT=ABC SOURCE=LOCAL")).replaces_client
    unknown = Forwarded().updated(parse("ADDR=[UNAVAILABLE]"))
    assert unknown.replaces_client and unknown.addr is None  # never mixed with the session's
    later = unknown.updated(parse("ADDR=192.0.2.9")).updated(parse("ADDR=192.0.2.10"))
    assert later.addr == "192.0.2.10"  # each command updates what it names


def test_attributes_pass_on_what_is_available_in_xforward_s_form() -> None:
    got = Forwarded().updated(parse("NAME=[UNAVAILABLE] ADDR=IPv6:2001:db8::7 IDENT=Q1"))
    assert got.attributes() == {"ADDR": "IPv6:2001:db8::7", "IDENT": "Q1"}


def test_commands_send_only_what_the_server_announced_within_512_octets() -> None:
    attributes = {
        "NAME": ".".join(["n" * 60] * 4),
        "ADDR": "192.0.2.55",
        "PORT": "4711",
        "PROTO": "ESMTP",
        "HELO": "h" * 250,
        "IDENT": "i+d=" + "x" * 200,
        "SOURCE": "REMOTE",
    }
    sent = commands(attributes, set(EHLO_LINE.split()[1:]))
    assert all(len(f"XFORWARD {line}\r\n") <= 512 for line in sent)
    assert len(sent) > 1
    back: dict[str, str | None] = {}
    for line in sent:
        back |= parse(line)
    assert back == attributes  # xtext carries '+' and '=' through
    assert commands(attributes, {"ADDR", "HELO"}) == [f"ADDR=192.0.2.55 HELO={'h' * 250}"]
    assert commands({}, {"ADDR"}) == []


def test_trust_is_by_network_and_the_default_is_loopback() -> None:
    assert trusted("127.0.0.1", DEFAULT_TRUSTED) and trusted("127.9.8.7", DEFAULT_TRUSTED)
    assert trusted("::1", DEFAULT_TRUSTED)
    assert not trusted("192.0.2.1", DEFAULT_TRUSTED) and not trusted("2001:db8::1", DEFAULT_TRUSTED)
    assert not trusted(None, DEFAULT_TRUSTED) and not trusted("nonsense", DEFAULT_TRUSTED)
    assert not trusted("127.0.0.1", ())


def test_networks_option_values() -> None:
    assert parse_networks("127.0.0.0/8,::1") == DEFAULT_TRUSTED
    assert parse_networks(" 192.0.2.0/24 , [2001:db8::]/32 ") == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert parse_networks("10.1.2.3") == (ipaddress.ip_network("10.1.2.3/32"),)
    assert parse_networks("None") == ()
    for bad, said in [
        ("192.0.2.1/24", "has host bits set"),
        ("loopback", "'loopback' is not a network"),
        (",", "no network given"),
    ]:
        with pytest.raises(ValueError, match=said) as refused:
            parse_networks(bad)
        assert "CIDR[,CIDR...]" in str(refused.value)

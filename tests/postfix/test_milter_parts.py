"""The milter's small pieces, without an MTA: the listen addresses ``--listen`` takes, the
Subject prefix (the gateway's rules: not twice, non-ASCII as an encoded word), and the CLI's
refusal of an address it cannot use."""

from __future__ import annotations

import email.header
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedgate.cli import main
from feedgate.mail.milter import ListenAddress, parse_listen, prefixed_subject


def test_listen_addresses_as_postfix_names_them() -> None:
    assert parse_listen("inet:127.0.0.1:11332") == ListenAddress("inet", "127.0.0.1", 11332)
    assert parse_listen("inet:[::1]:11332") == ListenAddress("inet", "::1", 11332)
    assert str(parse_listen("inet:[::1]:11332")) == "inet:[::1]:11332"
    assert parse_listen("unix:/run/feedgate/milter.sock") == ListenAddress(
        "unix", path=Path("/run/feedgate/milter.sock")
    )


@pytest.mark.parametrize(
    "bad", ["127.0.0.1:11332", "inet:127.0.0.1", "inet:host:99999", "unix:relative.sock", "tcp:x:1"]
)
def test_a_listen_address_that_cannot_be_used_is_refused_with_the_forms_it_takes(
    bad: str,
) -> None:
    with pytest.raises(ValueError, match=r"inet:HOST:PORT|unix:/path"):
        parse_listen(bad)


def test_the_cli_refuses_a_bad_listen_address_before_opening_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["milter", "--listen", "127.0.0.1:11332", "--db", str(tmp_path / "x.db")]
    )
    assert result.exit_code == 2
    assert "inet:HOST:PORT" in result.output
    assert not (tmp_path / "x.db").exists()


def test_the_subject_prefix_goes_before_the_subject_once() -> None:
    assert prefixed_subject(b" hello", "[SUSPECT]") == b" [SUSPECT] hello"
    assert prefixed_subject(b" [SUSPECT] hello", "[SUSPECT]") is None
    assert prefixed_subject(None, "[SUSPECT]") == b" [SUSPECT]"
    assert prefixed_subject(b" ", "[SUSPECT]") == b" [SUSPECT]"
    encoded = b" =?utf-8?q?Gr=C3=BC=C3=9Fe?="
    assert prefixed_subject(encoded, "[SUSPECT]") == b" [SUSPECT]" + encoded


def test_a_prefix_that_is_not_ascii_is_an_encoded_word() -> None:
    value = prefixed_subject(b" hello", "[VERDÄCHTIG]")
    assert value is not None and value.isascii()
    decoded = email.header.make_header(email.header.decode_header(value.decode().strip()))
    assert str(decoded) == "[VERDÄCHTIG] hello"

"""The milter's small pieces, without an MTA: the listen addresses ``--listen`` takes, the
Subject prefix (the gateway's rules: not twice, non-ASCII as an encoded word), and the CLI's
refusal of an address it cannot use."""

from __future__ import annotations

import email.header
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from clean_env import clean_env
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


def test_the_cli_says_when_its_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from milter_helpers import make_store

    from feedgate.feeds import secrets

    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    store, _policy = make_store(tmp_path / "feeds.db")
    store.close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # As a process, as an admin runs it: in-process, under a worker that had run other
        # tests, CI once saw it exit 1 with nothing said.
        result = subprocess.run(
            [
                *(sys.executable, "-m", "feedgate.cli", "milter"),
                *("--listen", f"inet:127.0.0.1:{port}", "--db", str(tmp_path / "feeds.db")),
            ],
            env=clean_env(**{secrets.KEY_ENV: os.environ[secrets.KEY_ENV]}),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"feedgate: error: cannot listen on inet:127.0.0.1:{port}: Address already in use"
        " (choose another with --listen, or stop what is using it)"
    )

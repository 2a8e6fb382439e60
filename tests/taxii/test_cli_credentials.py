"""Credentials written into a URL (``http://KEY:PASS@host/...``) never reach the output.

Every taxii-* command runs as a subprocess against a real server on 127.0.0.1 (one that
answers 404, one that answers nothing, or a port nobody listens on) with a URL that carries
credentials; its stderr and stdout may show the URL, but never the user name or the password.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripted_server import Answer, ScriptedServer
from taxii_helpers import run_taxii as taxii

from http_raw import closed_port

KEY = "k3yInTheUrl"
PASSWORD = "pa55InTheUrl"
SECRETS = (KEY, PASSWORD)


def assert_no_secret(done: subprocess.CompletedProcess[str]) -> None:
    for secret in SECRETS:
        assert secret not in done.stderr and secret not in done.stdout, done.stderr


@pytest.fixture(scope="module")
def not_found() -> Iterator[str]:
    """A server that answers every POST with an HTML 404 page; its base URL with credentials."""
    page = Answer(404, b"<html><title>404 Not Found</title></html>", {"Content-Type": "text/html"})
    with ScriptedServer(lambda _request: page) as server:
        yield server.url.replace("http://", f"http://{KEY}:{PASSWORD}@")


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("discovery", []),
        ("collections", []),
        ("poll", ["-c", "feed"]),
        ("poll", ["-c", "feed", "--count-only"]),
        ("push", ["--content-file", __file__]),
        ("subscription", ["-c", "feed", "-a", "subscribe"]),
    ],
)
def test_http_errors_and_info_lines_hide_url_credentials(
    not_found: str, command: str, extra: list[str]
) -> None:
    done = taxii(command, "--path", f"{not_found}/taxi/poll", *extra)
    assert done.returncode == 1
    assert "404" in done.stderr and "127.0.0.1" in done.stderr  # the URL is still named
    assert "Sending " in done.stderr
    assert_no_secret(done)


def test_discovery_through_the_discovery_flag_hides_them(not_found: str) -> None:
    done = taxii("poll", "--discovery", f"{not_found}/taxii/discovery", "-c", "feed")
    assert done.returncode == 1 and "404" in done.stderr
    assert_no_secret(done)


def test_connection_errors_hide_them() -> None:
    url = f"http://{KEY}:{PASSWORD}@127.0.0.1:{closed_port()}/taxii/poll"
    done = taxii("poll", "--path", url, "-c", "feed")
    assert done.returncode == 1 and "cannot connect" in done.stderr
    assert_no_secret(done)


def test_a_user_name_alone_is_hidden_too(not_found: str) -> None:
    # OTX takes the API key as the user name: it is the secret
    done = taxii("poll", "--path", not_found.replace(f":{PASSWORD}@", "@") + "/p", "-c", "feed")
    assert done.returncode == 1
    assert_no_secret(done)


def test_proxy_credentials_are_hidden(not_found: str) -> None:
    proxy = f"http://{KEY}:{PASSWORD}@127.0.0.1:{closed_port()}"
    done = taxii("poll", "--path", "http://127.0.0.1:9/p", "-c", "feed", "--proxy-url", proxy)
    assert done.returncode == 1
    assert_no_secret(done)


def test_jwt_url_credentials_are_hidden(not_found: str) -> None:
    done = taxii(
        "poll", "--path", f"{not_found}/p", "-c", "feed", "--jwt-auth", f"{not_found}/auth"
    )
    assert done.returncode == 1 and "JWT" in done.stderr
    assert_no_secret(done)


def test_taxii_proxy_hides_them(not_found: str) -> None:
    done = taxii(
        "proxy",
        "--poll-path", f"{not_found}/poll", "--poll-collection", "a",
        "--inbox-path", f"{not_found}/inbox", "--inbox-collection", "b",
    )  # fmt: skip
    assert done.returncode == 1 and "404" in done.stderr
    assert_no_secret(done)


def test_a_url_without_a_host_hides_them(tmp_path: Path) -> None:
    done = taxii("poll", "--path", f"http://{KEY}:{PASSWORD}@/p", "-c", "feed")
    assert done.returncode == 2
    assert_no_secret(done)

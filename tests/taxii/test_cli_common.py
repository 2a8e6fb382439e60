"""The shared pieces of the taxii-* CLIs that need no server: addresses, flags, output."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import pytest
from lxml import etree

from feedgate.taxii.cli import command_main
from feedgate.taxii.cli._common import Output, UsageError, parse_date, parse_headers, prepare_url
from feedgate.taxii.client import DEFAULT_TIMEOUT


def test_prepare_url_follows_cabbys_rule() -> None:
    assert prepare_url("/services/poll", "h.test", None, False) == "http://h.test/services/poll"
    assert prepare_url("/p", "h.test", None, True) == "https://h.test/p"
    assert prepare_url("/p", "h.test", 9000, False) == "http://h.test:9000/p"
    # --port wins over the port of a full URL (cabby 0.1.13); the URL's host and scheme stay
    assert prepare_url("https://o.test:8443/p?q=1", "h.test", 9000, False) == (
        "https://o.test:9000/p?q=1"
    )
    assert prepare_url("http://o.test:8080/p", None, None, False) == "http://o.test:8080/p"
    assert prepare_url("http://o.test:80/p", None, None, False) == "http://o.test/p"
    assert prepare_url("/p", "::1", 9000, False) == "http://[::1]:9000/p"
    with pytest.raises(UsageError, match='Scheme "ftp" is not supported'):
        prepare_url("ftp://o.test/p", None, None, False)
    with pytest.raises(UsageError, match="Host name is not provided: /p"):
        prepare_url("/p", None, None, False)


def test_headers_and_dates() -> None:
    assert parse_headers(['X-A:"quoted"', "X-B: 'b:c' ", "X-C:"]) == {
        "X-A": "quoted",
        "X-B": "b:c",
        "X-C": "",
    }
    with pytest.raises(UsageError, match="header:value"):
        parse_headers(["no-colon"])
    assert parse_date("2024-01-02", "--begin") == datetime(2024, 1, 2, tzinfo=UTC)
    assert parse_date("2024-01-02T03:04:05Z", "--begin") == datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    plus2 = parse_date("2024-01-02T03:04:05+02:00", "--end")
    assert plus2 is not None and plus2.utcoffset() == timedelta(hours=2)
    assert plus2.tzinfo == timezone(timedelta(hours=2))
    assert parse_date(None, "--end") is None
    with pytest.raises(UsageError, match="--end: not an ISO 8601 date"):
        parse_date("yesterday", "--end")


def test_xml_document_output_is_well_formed() -> None:
    stream = io.StringIO()
    out = Output("xml-document", "taxii-poll", stream)
    out.begin()
    out.xml(b'<a xmlns="urn:a"><b/></a>')
    out.xml_text("not <xml> & such")
    out.end()
    root = etree.fromstring(stream.getvalue().encode())
    assert root.get("command") == "taxii-poll"
    assert [etree.QName(c).localname for c in root] == ["a", "text"]
    assert root[1].text == "not <xml> & such"


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("discovery", ["--host", "h.test"], "Either Discovery Service path"),
        ("discovery", ["--path", "/d", "--host", "h.test", "--header", "x"], "header:value"),
        ("poll", ["--path", "/p", "--host", "h", "-c", "c", "--begin", "x"], "--begin: not an ISO"),
        ("poll", ["--path", "/p", "--host", "h", "-c", "c", "--count-only", "-t", "1.0"], "1.1"),
        (
            "poll",
            ["--path", "/p", "--host", "h", "-c", "c", "--dest-dir", "/nonexistent/d"],
            "dest",
        ),
        ("push", ["--path", "/i", "--host", "h", "-f", "x", "-t", "1.0", "--dest", "c"], "1.0"),
        ("discovery", ["--path", "ftp://h/d"], "not supported"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    command: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command_main(command)(args, None) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and " ERROR: " in err and message in err


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        command_main("poll")(["--path", "/p"], None)  # -c is required
    assert done.value.code == 2


def test_limit_zero_does_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert command_main("poll")(["--path", "http://127.0.0.1:9/p", "-c", "c", "-l", "0"], None) == 0
    assert capsys.readouterr() == ("", "")


def test_unreachable_server_fails_with_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--path", "http://127.0.0.1:9/services/discovery", "--timeout", "2"]
    assert command_main("discovery")(args, None) == 1
    lines = capsys.readouterr().err.splitlines()
    assert " INFO: Sending Discovery_Request to http://127.0.0.1:9/services/discovery" in lines[0]
    assert " ERROR: " in lines[-1] and "127.0.0.1:9" in lines[-1]


@pytest.mark.parametrize("command", ["discovery", "collections", "poll", "push", "subscription"])
def test_timeout_help_states_the_default_that_applies(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        command_main(command)(["--help"], f"taxii-{command}")
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    timeout = text[text.rindex("--timeout TIMEOUT") :].split(" --", 1)[0]
    assert "default: None" not in timeout
    connect, read = DEFAULT_TIMEOUT
    assert f"default: {read:g} to read an answer, {connect:g} to connect" in timeout, timeout

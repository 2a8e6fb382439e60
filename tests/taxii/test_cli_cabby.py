"""The taxii-* CLIs against cabby 0.1.23: same command line, same server (OpenTAXII 0.9.3),
same stdout and the same stderr log lines, except where docs/cabby-cli.md says we differ.

Our commands run in-process (``main(argv)``); cabby runs from the peers virtualenv.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from lxml import etree

from feedgate.taxii.cli import COMMANDS, command_main
from feedgate.taxii.cli._click import register
from peers import OpenTaxiiServer, RunCabby

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", re.MULTILINE)
STIX_DIR = Path(__file__).resolve().parent.parent / "data" / "stix1"


class Run:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def ours(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    def run(command: str, *args: str) -> Run:
        capsys.readouterr()
        try:
            code = command_main(command.removeprefix("taxii-"))(list(args), command)
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Run(code, out, err)

    yield run


def log_lines(stderr: str) -> list[str]:
    """stderr without timestamps."""
    return [line for line in TIMESTAMP.sub("", stderr).splitlines() if line.strip()]


def without_blank_lines(text: str) -> str:
    """cabby prints the whitespace that followed a content element in the server's message
    (a line of spaces after each block from OpenTAXII); we do not (docs/cabby-cli.md)."""
    return "\n".join(line for line in text.split("\n") if line.strip())


def masked(text: str) -> str:
    """Message ids and subscription ids differ from run to run."""
    text = re.sub(r"(Message ID|In Response To|Subscription ID): [^;\n]+", r"\1: X", text)
    return text


# --- discovery and collections ------------------------------------------------------------


def test_discovery_same_as_cabby(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    args = opentaxii.cabby_args(discovery=True, auth=False)
    for extra in ([], ["-x"]):
        theirs = run_cabby("taxii-discovery", *args, *extra)
        mine = ours("taxii-discovery", *args, *extra)
        assert mine.returncode == 0, mine.stderr
        assert mine.stdout == theirs.stdout
        assert log_lines(mine.stderr) == log_lines(theirs.stderr)
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO: Sending Discovery_Request to ", mine.stderr
    )


def test_discovery_with_path_same_as_cabby(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    args = opentaxii.cabby_args(opentaxii.url(opentaxii.discovery_path), auth=False)
    theirs = run_cabby("taxii-discovery", *args)
    mine = ours("taxii-discovery", *args)
    assert (mine.returncode, mine.stdout) == (0, theirs.stdout)
    assert log_lines(mine.stderr) == log_lines(theirs.stderr)


def test_collections_same_as_cabby(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    args = opentaxii.cabby_args(opentaxii.collection_management_path)
    theirs = run_cabby("taxii-collections", *args)
    mine = ours("taxii-collections", *args)
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout == theirs.stdout
    assert log_lines(mine.stderr) == log_lines(theirs.stderr)


def test_collections_as_xml_is_xml(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    args = [*opentaxii.cabby_args(opentaxii.collection_management_path), "-x"]
    theirs = run_cabby("taxii-collections", *args)
    assert theirs.stdout.startswith("b'<taxii_11:Collection")  # cabby's bug: a bytes repr
    mine = ours("taxii-collections", *args)
    assert mine.returncode == 0
    chunks = [c for c in mine.stdout.split("\n\n") if c.strip()]
    names = [etree.fromstring(c.encode()).get("collection_name") for c in chunks]
    assert opentaxii.collection_a in names


def test_collections_by_discovery(opentaxii: OpenTaxiiServer, ours: Any) -> None:
    """cabby asks every advertised service, HTTPS ones included, and hangs on a plain server;
    we ask those of the protocol discovery was reached with."""
    by_path = ours("taxii-collections", *opentaxii.cabby_args(opentaxii.collection_management_path))
    found = ours("taxii-collections", *opentaxii.cabby_args(discovery=True))
    assert found.returncode == 0, found.stderr
    assert found.stdout == by_path.stdout
    assert "services discovered" in found.stderr


# --- poll ---------------------------------------------------------------------------------


def test_poll_same_as_cabby(opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any) -> None:
    args = [*opentaxii.cabby_args(opentaxii.poll_path), "-c", opentaxii.collection_a]
    theirs = run_cabby("taxii-poll", *args)
    mine = ours("taxii-poll", *args)
    assert mine.returncode == 0, mine.stderr
    assert without_blank_lines(mine.stdout) == without_blank_lines(theirs.stdout)
    lines = log_lines(mine.stderr)
    # 7 blocks, 2 per part: one Poll_Request and three Poll_Fulfillment; cabby asks for a
    # fifth part although the fourth said there is no more (docs/cabby-cli.md)
    assert sum("Sending Poll_Fulfillment" in line for line in lines) == 3
    cabby_lines = log_lines(theirs.stderr)
    assert cabby_lines[-2] == lines[-2].replace("Poll_Request", "Poll_Fulfillment")
    assert lines == [*cabby_lines[:-2], cabby_lines[-1]]
    assert lines[-1] == f"INFO: {opentaxii.collection_a_count} blocks polled"
    # every block ends with one newline: the output is the packages, one after the other
    assert mine.stdout.count("</stix:STIX_Package>\n") == opentaxii.collection_a_count


def test_poll_taxii_10_same_as_cabby(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    # OpenTAXII refuses a 1.0 request whose message id is not digits (BAD_MESSAGE)
    args = [*opentaxii.cabby_args(opentaxii.poll_big_path), "-c", opentaxii.collection_a]
    theirs = run_cabby("taxii-poll", *args, "-t", "1.0")
    mine = ours("taxii-poll", *args, "-t", "1.0")
    assert mine.returncode == 0, mine.stderr
    assert "ERROR" not in theirs.stderr
    assert without_blank_lines(mine.stdout) == without_blank_lines(theirs.stdout)
    assert log_lines(mine.stderr) == log_lines(theirs.stderr)
    assert mine.stdout.count("</stix:STIX_Package>\n") == opentaxii.collection_a_count


def test_poll_window_limit_and_bindings_same_as_cabby(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    args = [
        *opentaxii.cabby_args(opentaxii.poll_path),
        "-c",
        opentaxii.collection_a,
        "--begin",
        "2024-01-02",
        "--end",
        "2024-01-05T00:00:00Z",
        "-b",
        "urn:stix.mitre.org:xml:1.1.1",
        "-l",
        "2",
    ]
    theirs = run_cabby("taxii-poll", *args)
    mine = ours("taxii-poll", *args)
    assert mine.returncode == 0, mine.stderr
    assert without_blank_lines(mine.stdout) == without_blank_lines(theirs.stdout)
    assert log_lines(mine.stderr) == log_lines(theirs.stderr)
    assert "Polling using data binding: ['urn:stix.mitre.org:xml:1.1.1']" in mine.stderr


def test_poll_raw_xml_same_as_cabby(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    args = [*opentaxii.cabby_args(opentaxii.poll_path), "-c", opentaxii.collection_a, "-r", "-x"]
    theirs = run_cabby("taxii-poll", *args)
    mine = ours("taxii-poll", *args)
    assert mine.returncode == 0, mine.stderr
    tail = re.compile(r">\s+</taxii_11:Content>")  # the server's whitespace (see above)
    assert mine.stdout == tail.sub("></taxii_11:Content>", theirs.stdout)


def test_poll_raw_text_works(opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any) -> None:
    args = [*opentaxii.cabby_args(opentaxii.poll_path), "-c", opentaxii.collection_a, "-r"]
    theirs = run_cabby("taxii-poll", *args)
    assert "'str' object has no attribute 'decode'" in theirs.stderr  # cabby's bug
    mine = ours("taxii-poll", *args)
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.count("=== Content Block ===\n") == opentaxii.collection_a_count
    first = opentaxii.collection_a_blocks[0].timestamp
    assert f"  Timestamp Label: {first}\n" in mine.stdout


def test_poll_count_only_same_as_cabby(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    args = [
        *opentaxii.cabby_args(opentaxii.poll_path),
        "-c",
        opentaxii.collection_a,
        "--count-only",
    ]
    theirs = run_cabby("taxii-poll", *args)
    mine = ours("taxii-poll", *args)
    assert mine.returncode == 0
    assert (mine.stdout, log_lines(mine.stderr)) == (theirs.stdout, log_lines(theirs.stderr))


def test_poll_dest_dir(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any, tmp_path: Path
) -> None:
    theirs_dir, mine_dir = tmp_path / "cabby", tmp_path / "ours"
    theirs_dir.mkdir()
    mine_dir.mkdir()
    base = [*opentaxii.cabby_args(opentaxii.poll_path), "-c", opentaxii.collection_a]
    theirs = run_cabby("taxii-poll", *base, "--dest-dir", str(theirs_dir))
    mine = ours("taxii-poll", *base, "--dest-dir", str(mine_dir))
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout == theirs.stdout == ""
    saved = [line for line in log_lines(mine.stderr) if "Content block saved to" in line]
    assert len(saved) == opentaxii.collection_a_count
    assert all(str(mine_dir) in line for line in saved)
    names = sorted(p.name for p in mine_dir.iterdir())
    assert len(names) == opentaxii.collection_a_count
    assert all(re.fullmatch(r"collection-a_[0-9a-f]{32}", n) for n in names)
    # the same contents (cabby's end with the server's whitespace); names are the md5 of the
    # block as cabby serialises it, which from OpenTAXII carries that whitespace too
    theirs_contents = sorted(p.read_bytes().rstrip() for p in theirs_dir.iterdir())
    assert sorted(p.read_bytes() for p in mine_dir.iterdir()) == theirs_contents
    # a second run writes the same names (cabby's rule: the name is a hash of the block)
    again = ours("taxii-poll", *base, "--dest-dir", str(mine_dir))
    assert again.returncode == 0
    assert sorted(p.name for p in mine_dir.iterdir()) == names


def test_poll_errors_are_cabbys_lines_with_a_failing_status(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    cases = [
        [*opentaxii.cabby_args(opentaxii.poll_path), "-c", "no-such-collection"],
        [*opentaxii.cabby_args(opentaxii.poll_path, auth=False), "-c", opentaxii.collection_a],
    ]
    for args in cases:
        theirs = run_cabby("taxii-poll", *args)
        mine = ours("taxii-poll", *args)
        assert theirs.returncode == 0  # cabby's bug
        assert mine.returncode == 1
        assert log_lines(mine.stderr) == log_lines(theirs.stderr)
        assert "ERROR: Server Error: " in mine.stderr


def test_poll_by_discovery(opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any) -> None:
    args = [*opentaxii.cabby_args(discovery=True), "-c", opentaxii.collection_a]
    mine = ours("taxii-poll", *args)
    # OpenTAXII advertises two poll services: ambiguous, as in cabby, but a failure now
    assert mine.returncode == 1
    assert "services found with type 'POLL'. Specify the exact URI" in mine.stderr
    theirs = run_cabby("taxii-poll", *args)
    assert "services found with type 'POLL'. Specify the exact URI" in theirs.stderr


def test_poll_machine_readable_outputs(opentaxii: OpenTaxiiServer, ours: Any) -> None:
    base = [*opentaxii.cabby_args(opentaxii.poll_path), "-c", opentaxii.collection_a]
    plain = ours("taxii-poll", *base)
    document = ours("taxii-poll", *base, "--as-xml-document")
    assert document.returncode == 0, document.stderr
    root = etree.fromstring(document.stdout.encode())
    assert root.tag == "{urn:feedgate:taxii-cli:1}output"
    assert len(root) == opentaxii.collection_a_count
    assert all(etree.QName(child).localname == "STIX_Package" for child in root)
    lines = ours("taxii-poll", *base, "--jsonl").stdout.splitlines()
    blocks = [json.loads(line) for line in lines]
    assert len(blocks) == opentaxii.collection_a_count
    assert "".join(b["content"] + "\n" for b in blocks) == plain.stdout
    assert blocks[0]["content_binding"]["binding_id"] == "urn:stix.mitre.org:xml:1.1.1"
    raw = ours("taxii-poll", *base, "-r", "--as-xml-document")
    assert len(etree.fromstring(raw.stdout.encode())) == opentaxii.collection_a_count
    empty = ours(
        "taxii-poll",
        *opentaxii.cabby_args(opentaxii.poll_path),
        "-c",
        opentaxii.empty_collection,
        "--as-xml-document",
    )
    assert len(etree.fromstring(empty.stdout.encode())) == 0


def test_poll_progress_only_on_a_terminal(
    opentaxii: OpenTaxiiServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = [*opentaxii.cabby_args(opentaxii.poll_path), "-c", opentaxii.collection_a]
    assert command_main("poll")(args, "taxii-poll") == 0
    assert "polling collection-a" in terminal.getvalue()
    assert "blocks polled" in terminal.getvalue()  # log lines still arrive
    monkeypatch.undo()
    capsys.readouterr()
    assert command_main("poll")(args, "taxii-poll") == 0
    assert "polling collection-a" not in capsys.readouterr().err


# --- subscriptions ------------------------------------------------------------------------


def test_subscription_lifecycle_same_as_cabby(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    base = [
        *opentaxii.cabby_args(opentaxii.collection_management_path),
        "-c",
        opentaxii.collection_a,
    ]
    mine = ours("taxii-subscription", *base, "-a", "subscribe")
    theirs = run_cabby("taxii-subscription", *base, "-a", "subscribe")
    assert mine.returncode == 0, mine.stderr
    assert masked(mine.stdout) == masked(theirs.stdout)
    assert log_lines(mine.stderr) == log_lines(theirs.stderr)
    (sid,) = re.findall(r"Subscription ID: (\S+)", mine.stdout)
    for action in ("status", "pause", "resume", "unsubscribe"):
        args = [*base, "-a", action, "-s", sid]
        theirs = run_cabby("taxii-subscription", *args)
        mine = ours("taxii-subscription", *args)
        assert mine.returncode == 0, mine.stderr
        assert masked(mine.stdout) == masked(theirs.stdout), action
        assert log_lines(mine.stderr) == log_lines(theirs.stderr)
    xml = ours("taxii-subscription", *base, "-a", "status", "-s", sid, "-x")
    assert etree.fromstring(xml.stdout.encode()).get("collection_name") == opentaxii.collection_a
    lines = ours("taxii-subscription", *base, "-a", "status", "-s", sid, "--jsonl").stdout
    assert json.loads(lines)["collection_name"] == opentaxii.collection_a


def test_subscription_usage_errors(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    base = [*opentaxii.cabby_args(opentaxii.collection_management_path), "-c", "x"]
    for extra, message in (
        (["-a", "pause"], "Action 'pause' requires subscription ID"),
        (
            ["-a", "resume", "-s", "1", "-t", "1.0"],
            'Action "resume" is not supported in TAXII v1.0',
        ),
    ):
        theirs = run_cabby("taxii-subscription", *base, *extra)
        mine = ours("taxii-subscription", *base, *extra)
        assert f"ERROR: {message}" in log_lines(theirs.stderr)
        assert log_lines(mine.stderr) == [f"ERROR: {message}"]
        assert (theirs.returncode, mine.returncode) == (0, 2)


# --- push and proxy -----------------------------------------------------------------------


def _package_ids(text: str) -> set[str]:
    return set(re.findall(r'<(?:[\w.-]+:)?STIX_Package\b[^>]*?\sid="([^"]+)"', text))


def _inbox_contents(opentaxii: OpenTaxiiServer, ours: Any) -> str:
    args = [*opentaxii.cabby_args(opentaxii.poll_path), "-c", opentaxii.inbox_collection]
    done = ours("taxii-poll", *args)
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def test_push_same_as_cabby(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any, tmp_path: Path
) -> None:
    files = sorted(STIX_DIR.glob("stixschemas-1.1.1_*.xml"))[:2]
    assert len(files) == 2
    base = [
        *opentaxii.cabby_args(opentaxii.inbox_path),
        "--dest",
        opentaxii.inbox_collection,
    ]
    theirs = run_cabby("taxii-push", *base, "-f", str(files[0]))
    mine = ours("taxii-push", *base, "-f", str(files[1]))
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout == theirs.stdout == ""
    assert log_lines(mine.stderr) == log_lines(theirs.stderr)
    assert log_lines(mine.stderr)[-1] == "INFO: Content block successfully pushed"
    pushed = _package_ids(_inbox_contents(opentaxii, ours))
    assert _package_ids(files[0].read_text()) | _package_ids(files[1].read_text()) <= pushed
    missing = ours("taxii-push", *base, "-f", str(tmp_path / "nope.xml"))
    assert missing.returncode == 1
    assert "No such file or directory" in missing.stderr


def test_proxy_same_as_cabby(opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any) -> None:
    args = [
        "--poll-path",
        opentaxii.url(opentaxii.poll_path),
        "--poll-collection",
        opentaxii.collection_a,
        "--poll-username",
        opentaxii.username,
        "--poll-password",
        opentaxii.password,
        "--inbox-path",
        opentaxii.url(opentaxii.inbox_path),
        "--inbox-collection",
        opentaxii.inbox_collection,
        "--inbox-username",
        opentaxii.username,
        "--inbox-password",
        opentaxii.password,
        "-l",
        "3",
    ]
    theirs = run_cabby("taxii-proxy", *args)
    mine = ours("taxii-proxy", *args)
    assert mine.returncode == 0, mine.stderr
    assert log_lines(mine.stderr) == log_lines(theirs.stderr)
    first = _package_ids(opentaxii.collection_a_blocks[0].path.read_text())
    assert first <= _package_ids(_inbox_contents(opentaxii, ours))
    bad = ours("taxii-proxy", *args[:-2], "--inbox-path", "/relative/path")
    assert bad.returncode == 1


# --- TLS: what cabby gets wrong -----------------------------------------------------------


def test_tls_client_certificate_and_key_password(opentaxii_tls: OpenTaxiiServer, ours: Any) -> None:
    """cabby cannot use --key-password (docs/cabby-cli.md, bug 4); we can."""
    tls = opentaxii_tls.tls
    assert tls is not None
    args = opentaxii_tls.cabby_args(opentaxii_tls.discovery_path)
    done = ours("taxii-discovery", *args)
    assert done.returncode == 0, done.stderr
    assert "Service Type: POLL" in done.stdout
    encrypted = [
        *opentaxii_tls.cabby_args(opentaxii_tls.discovery_path, client_cert=False),
        "--cert",
        str(tls.client_cert),
        "--key",
        str(tls.client_key_encrypted),
        "--key-password",
        tls.client_key_password,
    ]
    done = ours("taxii-discovery", *encrypted)
    assert done.returncode == 0, done.stderr
    assert "Service Type: POLL" in done.stdout
    done = ours("taxii-discovery", *encrypted[:-1], "not-the-password")
    assert done.returncode == 1
    assert "ERROR: " in done.stderr
    assert not_the_secret(done.stderr)
    no_ca = [a for a in args if a not in ("--ca-cert", str(tls.ca))]
    unverified = ours("taxii-discovery", *no_ca, "--verify", "no")
    assert unverified.returncode == 0, unverified.stderr
    other_ca = [str(tls.other_ca) if a == str(tls.ca) else a for a in args]
    done = ours("taxii-discovery", *other_ca)
    assert done.returncode == 1
    assert "ERROR: " in done.stderr
    via_verify = ["--verify" if a == "--ca-cert" else a for a in args]  # --verify PATH
    done = ours("taxii-discovery", *via_verify)
    assert done.returncode == 0, done.stderr


def test_collections_over_tls(opentaxii_tls: OpenTaxiiServer, ours: Any) -> None:
    args = opentaxii_tls.cabby_args(opentaxii_tls.collection_management_path)
    done = ours("taxii-collections", *args)
    assert done.returncode == 0, done.stderr
    assert "Collection Name: collection-a" in done.stdout


def not_the_secret(stderr: str) -> bool:
    return "not-the-password" not in stderr


# --- usage and wiring ---------------------------------------------------------------------


def test_missing_address_is_a_usage_error(run_cabby: RunCabby, ours: Any) -> None:
    theirs = run_cabby("taxii-discovery", "--host", "127.0.0.1")
    mine = ours("taxii-discovery", "--host", "127.0.0.1")
    assert log_lines(mine.stderr) == log_lines(theirs.stderr)
    assert (theirs.returncode, mine.returncode) == (1, 2)


def test_help_lists_cabbys_flags(run_cabby: RunCabby, ours: Any) -> None:
    for command in ("taxii-poll", "taxii-proxy", "taxii-push", "taxii-subscription"):
        theirs = run_cabby(command, "--help")
        mine = ours(command, "--help")
        assert mine.returncode == 0
        flags = re.compile(r"(?<![\w-])(--?[a-z][\w-]*)")
        extra = {"--as-xml-document", "--jsonl"}
        assert set(flags.findall(mine.stdout)) - extra == set(flags.findall(theirs.stdout))


def test_feedgate_taxii_passes_everything_to_the_command(opentaxii: OpenTaxiiServer) -> None:
    group = click.Group("feedgate")
    register(group)
    runner = CliRunner()
    result = runner.invoke(group, ["taxii", "--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in COMMANDS)
    result = runner.invoke(group, ["taxii", "poll", "--help"])
    assert result.exit_code == 0 and "--dest-dir" in result.output
    args = [*opentaxii.cabby_args(opentaxii.poll_path), "-c", opentaxii.collection_a, "-l", "1"]
    result = runner.invoke(group, ["taxii", "poll", *args])
    assert result.exit_code == 0, result.output
    assert result.output.count("</stix:STIX_Package>") == 1
    result = runner.invoke(group, ["taxii", "poll", "--host", "127.0.0.1", "-c", "x"])
    assert result.exit_code == 2


def test_console_scripts_run(opentaxii: OpenTaxiiServer) -> None:
    """The installed console script, as an admin runs it."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "taxii-poll"
    args = [*opentaxii.cabby_args(opentaxii.poll_path), "-c", opentaxii.collection_a, "-l", "1"]
    done = subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"NO_PROXY": "127.0.0.1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("</stix:STIX_Package>") == 1
    assert "\x1b[" not in done.stderr  # no colours when stderr is not a terminal


def test_verbose_logs_names_and_messages(
    opentaxii: OpenTaxiiServer, run_cabby: RunCabby, ours: Any
) -> None:
    args = [*opentaxii.cabby_args(discovery=True, auth=False), "-v"]
    theirs = run_cabby("taxii-discovery", *args)
    mine = ours("taxii-discovery", *args)
    assert mine.returncode == 0
    # -v: "asctime logger LEVEL: message", the request and the response at DEBUG
    assert re.search(
        r"^cabby\.dispatcher INFO: Sending Discovery_Request",
        TIMESTAMP.sub("", theirs.stderr),
        re.M,
    )
    lines = TIMESTAMP.sub("", mine.stderr)
    assert re.search(r"^feedgate\.taxii\.requests INFO: Sending Discovery_Request to ", lines, re.M)
    assert "feedgate.taxii.wire DEBUG: Request:\n<taxii_11:Discovery_Request" in lines
    assert "feedgate.taxii.wire DEBUG: Response:\n" in lines
    assert mine.stdout == theirs.stdout

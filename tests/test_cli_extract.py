"""`feedgate stix extract` end to end, as a user runs it (a real process)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from stix_helpers import DATA

STIX1 = DATA / "stix1"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feedgate.cli", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_jsonl_output_and_summary() -> None:
    result = run("stix", "extract", str(STIX1 / "stixschemas-1.1.1_STIX_IP_Watchlist.xml"))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["kind"], r["value"]) for r in rows] == [
        ("ipv4", "10.0.0.0"),
        ("ipv4", "10.0.0.1"),
        ("ipv4", "10.0.0.2"),
    ]
    assert rows[0]["indicator_type"] == "IP Watchlist"
    assert "3 observables from 1 input(s): ipv4 3" in result.stderr


def test_csv_and_table_formats() -> None:
    path = str(STIX1 / "stixproject-analyst-exercise_output.xml")
    result = run("stix", "extract", "--format", "csv", path)
    assert result.returncode == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"kind": "md5", "value": "6dc7cc33a3cdcfee6c4edb6c085b869d"}.items() <= rows[4].items()
    result = run("stix", "extract", "--format", "table", path)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].split() == ["KIND", "VALUE", "SOURCE"]
    assert "yahoomail.com.co" in result.stdout


def test_folder_and_stdin_inputs() -> None:
    result = run("stix", "extract", str(DATA / "stix2"))
    assert result.returncode == 0, result.stderr
    assert "8 input(s)" in result.stderr
    data = (STIX1 / "stixschemas-1.1.1_STIX_URL_Watchlist.xml").read_bytes()
    result = run("stix", "extract", "-", stdin=data)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 3


def test_bad_file_is_one_clear_line_and_others_still_run(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.xml"
    hostile.write_bytes(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    html = tmp_path / "page.xml"
    html.write_bytes(b"<html><body>Service Unavailable</body></html>")
    good = STIX1 / "stixschemas-1.1.1_STIX_Domain_Watchlist.xml"
    result = run("stix", "extract", str(hostile), str(good), str(html), str(tmp_path / "none"))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("feedgate: error:")]
    assert len(errors) == 3
    assert f"{hostile}: refused: the document declares XML entities" in errors[0]
    assert "root element is <html>" in errors[1]
    assert "No such file or directory" in errors[2]
    assert "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == 3  # the good file's observables


def test_invalid_values_are_skipped_and_counted_exit_zero() -> None:
    result = run("stix", "extract", str(STIX1 / "stixschemas-1.1.1_STIX_FileHash_Watchlist.xml"))
    assert result.returncode == 0
    assert "1 × invalid md5 value" in result.stderr


def test_bad_usage_exits_2() -> None:
    assert run("stix", "extract").returncode == 2
    assert run("stix", "extract", "--format", "yaml", "x").returncode == 2


def test_progress_bar_on_a_terminal_for_large_inputs(tmp_path: Path) -> None:
    """On a terminal, a large input shows a progress bar on stderr; stdout stays clean."""
    import os
    import pty

    package = (STIX1 / "stixschemas-1.1.1_STIX_IP_Watchlist.xml").read_bytes()
    big = tmp_path / "big.xml"
    copies = 9 * 1024**2 // len(package) + 1  # over the 8 MB threshold
    big.write_bytes(b"\n".join([package] * copies))
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "feedgate.cli", "stix", "extract", "-q", str(big)],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
            env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
        )
        os.close(follower)
        shown = b""
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            shown += data
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 3 * copies
    assert b"big.xml" in shown  # the bar names the file
    assert b"\x1b[" in shown  # drawn with terminal control sequences


def test_table_rows_cannot_be_forged_by_feed_text(tmp_path: Path) -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--1",
        "objects": [
            {
                "type": "indicator",
                "id": "indicator--1",
                "name": "x\nipv4    203.0.113.66    FAKE\x1b[2J",
                "pattern": "[domain-name:value = 'evil.example']",
                "pattern_type": "stix",
            }
        ],
    }
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(bundle))
    result = run("stix", "extract", "--format", "table", str(path))
    lines = result.stdout.splitlines()
    assert len(lines) == 2  # the header and one row
    assert "\x1b" not in result.stdout
    assert "\\n" in lines[1]


def test_a_closed_stdout_is_not_an_error() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "feedgate.cli", "stix", "extract", str(DATA / "stix2")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr

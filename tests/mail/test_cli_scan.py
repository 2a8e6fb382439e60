"""``feedgate scan``'s own rules, as a process: what it reads, what it refuses, what it prints.

(The verdicts themselves are covered end to end in test_scan_end_to_end.py.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from feedgate.cli.scan import line, lines
from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.limits import MAX_MESSAGE_BYTES
from feedgate.mail.model import Action, Match, Part
from feedgate.mail.policy import Verdict

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
MESSAGE = b"From: a@example.org\nSubject: hi\n\nnothing here\n"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    key = secrets.generate_key()
    monkeypatch.setenv(secrets.KEY_ENV, key)
    store = FeedStore(engine(str(tmp_path / "feeds.db")))
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    store.close()
    return {**os.environ, "FEEDGATE_DB": str(tmp_path / "feeds.db"), secrets.KEY_ENV: key}


def scan(env: dict[str, str], *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FEEDGATE, "scan", "--no-log", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,  # type: ignore[call-overload]
    )


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_scanned(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "mail"
    (folder / "locked").mkdir(parents=True)
    (folder / "locked" / "inside.eml").write_bytes(MESSAGE)
    (folder / "ok.eml").write_bytes(MESSAGE)
    (folder / "locked").chmod(0)
    command = [FEEDGATE, "scan", "--no-log", str(folder)]
    if os.geteuid() == 0:  # root reads any folder: drop the capabilities that let it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: a folder cannot be made unreadable")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "--", *command]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        (folder / "locked").chmod(0o700)
    assert done.returncode == 1
    assert f"cannot read {folder / 'locked'}: Permission denied" in done.stderr
    assert done.stdout.splitlines() == [f"{folder / 'ok.eml'}: deliver"]


def test_a_message_over_the_size_limit_is_refused_unread_and_the_rest_scanned(
    env: dict[str, str], tmp_path: Path
) -> None:
    huge = tmp_path / "huge.eml"
    with huge.open("wb") as file:  # sparse: no disk, and nothing read past the limit
        file.truncate(MAX_MESSAGE_BYTES + 1)
    ok = tmp_path / "ok.eml"
    ok.write_bytes(MESSAGE)
    done = scan(env, str(huge), str(ok))
    assert done.returncode == 1
    assert "huge.eml: over 64 MiB, the largest message feedgate scans" in done.stderr
    assert done.stdout.splitlines() == [f"{ok}: deliver"]


def test_bad_usage_is_exit_2_with_one_clear_line(env: dict[str, str], tmp_path: Path) -> None:
    ok = tmp_path / "ok.eml"
    ok.write_bytes(MESSAGE)
    twice = scan(env, "-", "-", input="")
    assert twice.returncode == 2 and "stdin (-) can be named once" in twice.stderr
    bad_ip = scan(env, "--client-ip", "999.1.1.1", str(ok))
    assert bad_ip.returncode == 2
    assert bad_ip.stderr.count("999.1.1.1") == 1
    bad_sender = scan(env, "--envelope-from", "not an address", str(ok))
    assert bad_sender.returncode == 2 and "--envelope-from" in bad_sender.stderr
    assert scan(env, "--envelope-from", "<>", str(ok)).returncode == 0
    assert scan(env, "--envelope-from", "Bounce@Example.org", str(ok)).returncode == 0
    assert scan(env).returncode == 2


def test_the_line_names_each_distinct_match_once_and_what_a_tag_adds() -> None:
    match = Match(Part.URL, "domain", "bad.example", "http://a.bad.example/", "otx", 1, {})
    seen_elsewhere = Match(Part.URL, "domain", "bad.example", "http://b.bad.example/", "otx", 1, {})
    verdict = Verdict(
        message="m.eml",
        action=Action.TAG,
        rules=("tag-it",),
        matches=(match, seen_elsewhere),
        subject_prefix="[THREAT]",
    )
    assert line(verdict) == (
        "m.eml: tag [tag-it]: url domain bad.example (otx: no title) x2; subject prefix '[THREAT]'"
    )


def test_a_monitored_match_gets_a_would_have_line_of_its_own_once() -> None:
    match = Match(Part.URL, "domain", "bad.example", "http://a.bad.example/", "new", 1,
                  {"package_title": "Phish wave"})  # fmt: skip
    again = Match(Part.URL, "domain", "bad.example", "http://b.bad.example/", "new", 1,
                  {"package_title": "Phish wave"})  # fmt: skip
    verdict = Verdict(
        message="m.eml",
        action=Action.DELIVER,
        monitored=(match, again),
        monitored_rules=(("threat-feeds",), ("threat-feeds",)),
        rule_actions={"threat-feeds": Action.QUARANTINE},
    )
    assert lines(verdict) == [
        "m.eml: deliver",
        "m.eml: would have quarantine [threat-feeds]: url domain bad.example"
        " (new: Phish wave, monitor mode) x2",
    ]

"""`feedgate hub seed | user add | pulse import` as a user runs them (real processes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hub_helpers import DATA, make_pulse, open_store

from feedgate.hub.model import pulse_to_otx, utcnow
from feedgate.hub.passwords import api_key_digest


@pytest.fixture
def hub_db(tmp_path: Path) -> Path:
    return tmp_path / "hub.db"


def run(
    *args: str, db: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "FEEDGATE_HUB_DB"}
    if db is not None:
        full_env["FEEDGATE_HUB_DB"] = str(db)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "feedgate.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("feedgate: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_seed(hub_db: Path) -> None:
    result = run("hub", "seed", "--pulses", "12", "--indicators-per-pulse", "4", db=hub_db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("seeded 12 pulses with 48 indicators by AlienVault into ")
    again = run("hub", "seed", "--pulses", "12", "--indicators-per-pulse", "4", db=hub_db)
    assert again.returncode == 1
    assert "already exists" in one_error_line(again)
    other = run(
        "hub", "seed", "--pulses", "2", "--author", "Bob", "--seed", "5", "--db", str(hub_db)
    )
    assert other.returncode == 0, other.stderr
    assert open_store(hub_db).stats()["pulses"] == 14
    # --db on the group works too, and wins over nothing else set.
    group = run("hub", "--db", str(hub_db), "seed", "--pulses", "1", "--seed", "9")
    assert group.returncode == 0, group.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["hub", "seed", "--pulses", "-1"],
        ["hub", "seed", "--pulses", "many"],
        ["hub", "seed", "--author", " "],
        ["hub", "user", "add"],
        ["hub", "user", "add", "x", "--password-env", "FEEDGATE_TEST_UNSET"],
        ["hub", "pulse", "import"],
        ["hub", "nope"],
    ],
)
def test_usage_errors_exit_2(hub_db: Path, args: list[str]) -> None:
    result = run(*args, db=hub_db)
    assert result.returncode == 2, result.stderr
    assert "Usage:" in result.stderr


def test_user_add(hub_db: Path) -> None:
    authors = open_store(hub_db)
    authors.add_pulses([make_pulse(1, author="Bob"), make_pulse(2, author="Carol")])
    result = run("hub", "user", "add", "alice", "--subscribe", "Bob", db=hub_db)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert "created user alice" in result.stderr and "shown only once" in result.stderr
    store = open_store(hub_db)
    user = store.user_by_api_key(key)
    assert user is not None and user.username == "alice"
    # An existing user gets more instead of an error; no new key is generated.
    more = run(
        "hub",
        "user",
        "add",
        "alice",
        "--api-key",
        "second-key-for-alice",
        "--subscribe",
        "Carol",
        "--password-env",
        "ALICE_PW",
        db=hub_db,
        env={"ALICE_PW": "pw-from-env"},
    )
    assert more.returncode == 0, more.stderr
    assert more.stdout == ""
    second = api_key_digest("second-key-for-alice")[:12]
    said = f"updated user alice: added API key {second}, set the password, following Carol;"
    assert f"{said} follows Bob, Carol" in more.stderr
    assert "pw-from-env" not in more.stderr + more.stdout
    assert store.user_by_api_key("second-key-for-alice") == store.user_by_api_key(key)
    assert store.check_password("alice", "pw-from-env")
    # A key that belongs to someone else is a failure, in one line, without the key.
    taken = run("hub", "user", "add", "eve", "--api-key", "second-key-for-alice", db=hub_db)
    assert taken.returncode == 1
    line = one_error_line(taken)
    assert "already in use" in line and "second-key-for-alice" not in line
    listing = run("hub", "user", "list", db=hub_db)
    assert listing.returncode == 0
    assert listing.stdout.splitlines() == [
        "Bob\tfollows: -\tkeys: 0",
        "Carol\tfollows: -\tkeys: 0",
        "alice\tfollows: Bob, Carol\tkeys: 2\tpassword",
    ]


def test_seeded_author_gets_a_key(hub_db: Path) -> None:
    assert run("hub", "seed", "--pulses", "1", db=hub_db).returncode == 0
    result = run("hub", "user", "add", "AlienVault", db=hub_db)
    assert result.returncode == 0, result.stderr
    assert "updated user AlienVault" in result.stderr
    assert re.fullmatch(r"[0-9a-f]{64}", result.stdout.strip())


def test_pulse_import(hub_db: Path, tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(pulse_to_otx(make_pulse(1, indicators=3), detail=True)))
    many = tmp_path / "many.json"
    many.write_text(json.dumps([pulse_to_otx(make_pulse(n)) for n in (2, 3)]))
    before = utcnow()
    result = run("hub", "pulse", "import", str(one), db=hub_db)
    assert result.returncode == 0, result.stderr
    assert "imported 1 pulses (1 new, 0 updated, 3 indicators)" in result.stdout
    position = open_store(hub_db).pulse_position(make_pulse(1).id)
    assert position is not None and position[0] >= before  # not behind pollers' watermarks
    result = run("hub", "pulse", "import", str(many), db=hub_db)
    assert result.returncode == 0, result.stderr
    store = open_store(hub_db)
    assert store.get_pulse(make_pulse(1).id) is not None
    assert store.stats()["pulses"] == 3
    # Importing again replaces: a new revision.
    result = run("hub", "pulse", "import", str(one), db=hub_db)
    assert "(0 new, 1 updated" in result.stdout
    updated = store.get_pulse(make_pulse(1).id)
    assert updated is not None and updated.revision == 2


def test_pulse_import_failures(hub_db: Path, tmp_path: Path) -> None:
    sample = DATA / "otx" / "otx-python-sdk_update_pulse.json"
    result = run("hub", "pulse", "import", str(sample), db=hub_db)
    assert result.returncode == 1
    assert "[0]: an indicator, not a pulse" in one_error_line(result)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not JSON" in one_error_line(run("hub", "pulse", "import", str(bad), db=hub_db))
    wrong = tmp_path / "wrong.json"
    data = [pulse_to_otx(make_pulse(1)), pulse_to_otx(make_pulse(2))]
    data[1]["indicators"][0]["type"] = "Foo"
    wrong.write_text(json.dumps(data))
    result = run("hub", "pulse", "import", str(wrong), db=hub_db)
    assert result.returncode == 1
    assert "[1].indicators[0].type: unknown indicator type 'Foo'" in one_error_line(result)
    assert open_store(hub_db).stats()["pulses"] == 0  # nothing stored from a bad file
    # JSON can spell a lone surrogate or a NUL; stored, such a pulse broke every list showing it.
    for text, says in (("\ud800", "lone surrogate"), ("\u0000", "NUL character")):
        odd = tmp_path / "odd.json"
        data = [pulse_to_otx(make_pulse(1)), pulse_to_otx(make_pulse(2))]
        data[1]["tags"] = ["ok", f"tag{text}"]
        odd.write_text(json.dumps(data))  # ASCII, the character escaped
        result = run("hub", "pulse", "import", str(odd), db=hub_db)
        assert result.returncode == 1
        line = one_error_line(result)
        assert line.count("[1]: text") == 1 and says in line, line
    assert open_store(hub_db).stats()["pulses"] == 0
    missing = run("hub", "pulse", "import", str(tmp_path / "nope.json"), db=hub_db)
    assert missing.returncode == 1
    assert "No such file or directory" in one_error_line(missing)


def test_database_errors_are_one_line(tmp_path: Path) -> None:
    pg = run("hub", "--db", "postgresql://hub:s3cret@127.0.0.1:1/hub", "user", "list")
    assert pg.returncode == 1
    line = one_error_line(pg)
    assert "s3cret" not in line and "***" in line
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    result = run("hub", "user", "list", db=not_a_db)
    assert result.returncode == 1
    one_error_line(result)
    verbose = run("-v", "hub", "user", "list", db=not_a_db)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr

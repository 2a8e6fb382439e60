"""Administering the hub's users and keys from the command line (real processes): every change
is said, nothing-to-change is said plainly, unknown authors are refused, keys can be listed
(never in full) and revoked, and `feedgate up` keeps one demo key instead of adding one per run."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from hub_helpers import make_pulse, open_store
from test_hub_cli import one_error_line, run

from clean_env import clean_env
from feedgate.cli.hub import hub as hub_group
from feedgate.hub.passwords import api_key_digest
from feedgate.hub.store import HubStore

FEEDGATE = str(Path(sys.executable).parent / "feedgate")


@pytest.fixture
def hub_db(tmp_path: Path) -> Path:
    path = tmp_path / "hub.db"
    store = open_store(path)
    store.add_pulses([make_pulse(1, author="AlienVault"), make_pulse(2, author="Bob")])
    store.close()
    return path


def add(hub_db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("hub", "user", "add", *args, db=hub_db)


def key_ids(store: HubStore, user: str) -> list[str]:
    return [k.id for k in store.api_keys(user)]


def test_adding_nothing_new_to_an_existing_user_says_so_and_changes_nothing(hub_db: Path) -> None:
    created = add(hub_db, "alice", "--subscribe", "Bob")
    assert created.returncode == 0, created.stderr
    store = open_store(hub_db)
    before = (key_ids(store, "alice"), store.subscriptions("alice"))
    for again in (add(hub_db, "alice"), add(hub_db, "alice", "--subscribe", "Bob")):
        assert again.returncode == 0, again.stderr
        assert again.stdout == ""  # no key generated
        assert "updated" not in again.stderr
        assert "user alice exists and already has all that: nothing changed" in again.stderr
    assert (key_ids(store, "alice"), store.subscriptions("alice")) == before


def test_an_existing_author_gets_what_is_new_and_the_message_names_it(hub_db: Path) -> None:
    result = add(hub_db, "Bob", "--api-key", "bobs-own-key", "--subscribe", "AlienVault")
    assert result.returncode == 0, result.stderr
    store = open_store(hub_db)
    (key,) = store.api_keys("Bob")
    assert f"updated user Bob: added API key {key.id}, following AlienVault" in result.stderr
    assert "bobs-own-key" not in result.stderr + result.stdout
    user = store.user_by_api_key("bobs-own-key")
    assert user is not None and user.username == "Bob"
    assert store.subscriptions("Bob") == ["AlienVault"]


def test_subscribing_to_an_unknown_author_is_refused(hub_db: Path) -> None:
    result = add(hub_db, "alice", "--subscribe", "NoSuchAuthor")
    line = one_error_line(result)
    assert result.returncode == 1
    assert "no such author: NoSuchAuthor" in line
    assert open_store(hub_db).get_user("alice") is None  # nothing half done
    assert add(hub_db, "carol").returncode == 0
    assert add(hub_db, "dave", "--subscribe", "carol").returncode == 0  # users are authors


def test_user_list_and_delete(hub_db: Path) -> None:
    key = add(hub_db, "alice", "--subscribe", "Bob").stdout.strip()
    assert add(hub_db, "carol", "--subscribe", "alice").returncode == 0
    listing = run("hub", "user", "list", db=hub_db)
    assert listing.returncode == 0, listing.stderr
    assert "alice\tfollows: Bob\tkeys: 1" in listing.stdout.splitlines()
    gone = run("hub", "user", "delete", "alice", db=hub_db)
    assert gone.returncode == 0, gone.stderr
    assert "deleted user alice" in gone.stderr
    store = open_store(hub_db)
    assert store.get_user("alice") is None and store.user_by_api_key(key) is None
    assert [k.username for k in store.api_keys()] == ["carol"]
    assert store.subscriptions("carol") == []  # nobody follows a user who is gone
    missing = run("hub", "user", "delete", "alice", db=hub_db)
    assert missing.returncode == 1 and "no such user: alice" in one_error_line(missing)
    # An author's pulses are not deleted by surprise.
    authored = run("hub", "user", "delete", "Bob", db=hub_db)
    assert authored.returncode == 1 and "--with-pulses" in one_error_line(authored)
    assert store.get_user("Bob") is not None
    with_pulses = run("hub", "user", "delete", "Bob", "--with-pulses", db=hub_db)
    assert with_pulses.returncode == 0, with_pulses.stderr
    assert "1 pulse" in with_pulses.stderr
    assert store.get_user("Bob") is None and store.authors() == ["AlienVault"]


def test_key_list_never_shows_a_key_and_revoke_takes_its_id(hub_db: Path) -> None:
    first = add(hub_db, "alice").stdout.strip()
    assert add(hub_db, "alice", "--api-key", "second-key-of-alice").returncode == 0
    listing = run("hub", "key", "list", db=hub_db)
    assert listing.returncode == 0, listing.stderr
    assert first not in listing.stdout and "second-key-of-alice" not in listing.stdout
    rows = [line.split("\t") for line in listing.stdout.splitlines()]
    assert [r[1] for r in rows] == ["alice", "alice"]
    ids = [r[0] for r in rows]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)
    store = open_store(hub_db)
    assert sorted(ids) == sorted(key_ids(store, "alice"))
    mine = run("hub", "key", "list", "--user", "alice", db=hub_db)
    assert mine.stdout == listing.stdout
    first_id = api_key_digest(first)[:12]  # the id is a prefix of the stored digest
    assert first_id in ids
    revoked = run("hub", "key", "revoke", first_id, db=hub_db)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked API key {first_id} of alice" in revoked.stderr
    assert store.user_by_api_key(first) is None
    assert store.user_by_api_key("second-key-of-alice") is not None
    again = run("hub", "key", "revoke", first_id, db=hub_db)
    assert again.returncode == 1 and f"no API key with id {first_id}" in one_error_line(again)


def test_every_hub_option_has_help() -> None:
    missing = []

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{path} {param.opts[0]}")
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}")

    walk(hub_group, "hub")
    assert missing == []


def _up_once(env: dict[str, str]) -> str:
    """Run `feedgate up` until it is serving, stop it; the demo API key it printed."""
    proc = subprocess.Popen(
        [FEEDGATE, "up", "--port", "0", "--gateway-port", "0", "--pulses", "3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if not line or line.startswith("API:"):
            break
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    text = "".join(seen)
    found = re.search(r"^API key:\s+(\S+)", text, re.MULTILINE)
    assert found, text
    return found.group(1)


def test_up_reuses_its_demo_key(tmp_path: Path) -> None:
    env = clean_env()
    env.update(
        FEEDGATE_DB=str(tmp_path / "feeds.db"),
        FEEDGATE_HUB_DB=str(tmp_path / "hub.db"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        NO_PROXY="127.0.0.1",
    )
    first, second = _up_once(env), _up_once(env)
    assert first == second
    store = open_store(tmp_path / "hub.db")
    assert len(store.api_keys("gateway")) == 1
    # Revoked, it is replaced by one new key (and the source follows), not kept working.
    store.revoke_api_key(store.api_keys("gateway")[0].id)
    third = _up_once(env)
    assert third != first and len(store.api_keys("gateway")) == 1

"""The secret key changed (or the database moved without it): sources still list, show and edit;
each one whose stored secrets cannot be decrypted fails its own poll saying what to do, and the
schedule goes on for the others. The stored secrets are kept, so restoring the key is enough."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feedgate import db
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import poll_source
from feedgate.feeds.scheduler import Scheduler
from feedgate.feeds.secrets import KEY_ENV, generate_key
from feedgate.feeds.sources import Source, SourceError, validate
from feedgate.feeds.store import FeedStore
from feedgate.web.api import source_json
from http_raw import closed_port

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: its own database, data directory and key; $PW a password."""
    return {
        **os.environ,
        "FEEDGATE_DB": str(tmp_path / "feeds.db"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        KEY_ENV: generate_key(),
        "PW": "s3cret",
    }


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "feedgate.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_sources_outlive_a_changed_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old_key, new_key = generate_key(), generate_key()
    monkeypatch.setenv(KEY_ENV, old_key)
    path = tmp_path / "feeds.db"
    store = FeedStore(db.engine(str(path)))
    port = closed_port()
    locked = Source(
        name="locked", hostname="127.0.0.1", port=port, use_https=False, collection="c",
        username="api-key", password="s3cret",
    )  # fmt: skip
    store.add_source(locked)
    store.add_source(dataclasses.replace(locked, name="open", username=None, password=None))

    monkeypatch.setenv(KEY_ENV, new_key)
    listed = {s.name: s for s in store.list_sources()}  # it raised: every scheduler pass failed
    assert listed["locked"].password is None
    assert listed["locked"].unreadable_secrets == {"password"}
    assert listed["open"].unreadable_secrets == frozenset()
    assert [s.name for s in Scheduler(store, ThreatFeedLog(store, write_file=False)).due()] == [
        "locked",
        "open",
    ]
    shown = source_json(listed["locked"], store)
    assert shown["password_set"] is True and shown["unreadable_secrets"] == ["password"]

    # Its poll fails at once, saying what to do (the closed port is never tried).
    result = poll_source(store, listed["locked"], ThreatFeedLog(store, write_file=False))
    assert not result.ok
    assert "stored password cannot be decrypted with the current secret key" in (result.error or "")
    assert "feedgate source edit locked --password-env VAR" in (result.error or "")
    assert "refused" not in (result.error or "") and "s3cret" not in (result.error or "")
    assert store.status("locked").result == "error"

    # An edit that does not touch the password keeps it as stored ...
    store.update_source(dataclasses.replace(listed["locked"], enabled=False))
    monkeypatch.setenv(KEY_ENV, old_key)
    back = store.get_source("locked")
    assert back is not None and back.password == "s3cret" and not back.enabled

    # ... and one that gives it anew stores it under the current key.
    monkeypatch.setenv(KEY_ENV, new_key)
    again = store.get_source("locked")
    assert again is not None
    store.update_source(dataclasses.replace(again, password="n3w", unreadable_secrets=frozenset()))
    renewed = store.get_source("locked")
    assert renewed is not None and renewed.password == "n3w" and not renewed.unreadable_secrets
    store.close()


def test_cli_show_and_edit_after_a_key_change(tmp_path: Path) -> None:
    env = cli_env(tmp_path)

    def feedgate(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args)

    added = feedgate(
        "source", "add", "otx", "--hostname", "127.0.0.1", "--port", str(closed_port()),
        "--no-https", "--poll-path", "/taxii/poll", "--collection", "c", "--username", "k",
        "--password-env", "PW",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    env[KEY_ENV] = generate_key()
    shown = feedgate("source", "show", "otx")
    assert shown.returncode == 0, shown.stderr
    assert "cannot be decrypted with the current secret key" in shown.stdout
    assert "s3cret" not in shown.stdout
    polled = feedgate("poll", "otx")
    assert polled.returncode == 1
    assert "feedgate source edit otx --password-env VAR" in polled.stdout + polled.stderr
    assert feedgate("source", "disable", "otx").returncode == 0
    edited = feedgate("source", "edit", "otx", "--password-env", "PW")
    assert edited.returncode == 0, edited.stderr
    lines = feedgate("source", "show", "otx").stdout.splitlines()
    assert [line.split() for line in lines if line.startswith("password:")] == [
        ["password:", "********"]
    ]


def test_an_unreadable_secret_can_be_removed_and_counts_as_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`source edit --no-password` of a password the key cannot decrypt said "nothing changed"
    and kept it (None == None: unreadable_secrets is not compared); and clearing the user name
    or the certificate alone was taken, keeping a password with no user (or a key password with
    no certificate) stored, which validate() refuses when the secret can be read."""
    env = cli_env(tmp_path)

    def feedgate(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args)

    added = feedgate(
        "source", "add", "otx", "--hostname", "feed.example", "--poll-path", "/taxii/poll",
        "--collection", "c", "--username", "k", "--password-env", "PW",
        "--cert", str(tmp_path / "c.pem"), "--key-password-env", "PW",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    env[KEY_ENV] = generate_key()

    no_cert = feedgate("source", "edit", "otx", "--cert", "")
    assert no_cert.returncode == 1 and "key password needs a client certificate" in no_cert.stderr
    monkeypatch.setenv(KEY_ENV, env[KEY_ENV])
    store = FeedStore(db.engine(env["FEEDGATE_DB"]))
    stored = store.get_source("otx")
    assert stored is not None and stored.unreadable_secrets == {"password", "key_password"}
    with pytest.raises(SourceError, match="a password needs a user name"):
        validate(dataclasses.replace(stored, username=None))

    removed = feedgate("source", "edit", "otx", "--no-password")
    assert removed.returncode == 0 and "nothing changed" not in removed.stdout, removed.stdout
    removed = feedgate("source", "edit", "otx", "--key-password-env", "")
    assert removed.returncode == 0 and "nothing changed" not in removed.stdout, removed.stdout
    after = store.get_source("otx")
    assert after is not None and after.password is None and after.key_password is None
    assert after.unreadable_secrets == frozenset()
    store.close()

"""The OTX API key is the TAXII user name (issue 11, item 6a): a user name the source marks as
secret is stored encrypted and shown only as "(secret, set)" by every face (CLI show/list, the
REST API, the threat-feed log, error messages), and the CLI and the REST API write a source
through one function with the same fields and rules."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_client import api_client

from feedgate import db
from feedgate.feeds import secrets
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import poll_source
from feedgate.feeds.sources import SECRET_SET, Source, SourceError, make_source
from feedgate.feeds.store import FeedStore
from feedgate.web.api import OPENAPI
from http_raw import closed_port

TOKEN = "secret-username-token"
OTX_KEY = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
OTX: dict[str, Any] = {
    "name": "otx",
    "hostname": "otx.alienvault.com",
    "collection": "user_AlienVault",
    "username": OTX_KEY,
}


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    return tmp_path / "feeds.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[FeedStore]:
    feeds = FeedStore(db.engine(str(db_path)))
    yield feeds
    feeds.close()


@pytest.fixture
def api(store: FeedStore) -> Iterator[httpx.Client]:
    with api_client(store, TOKEN) as client:
        yield client


def cli(
    db_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``feedgate source ...`` in a process of its own, on ``db_path``."""
    return subprocess.run(
        [sys.executable, "-m", "feedgate.cli", *args, "--db", str(db_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def raw_bytes(db_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))


# -- the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "secret"),
    [
        ({}, True),  # OTX: always
        ({"hostname": "hub.example", "password": None}, True),  # no password: the name is a key
        ({"hostname": "hub.example", "password": "x"}, True),  # a placeholder password
        ({"hostname": "hub.example", "password": "  Dummy "}, True),
        ({"hostname": "hub.example", "password": "s3cret-Pa55word"}, False),  # a real login
        ({"hostname": "hub.example", "password": "s3cret-Pa55word", "username_secret": True}, True),
    ],
)
def test_the_user_name_is_secret_where_the_source_says_so(
    fields: dict[str, Any], secret: bool
) -> None:
    source = make_source({**OTX, **fields})
    assert source.username_secret is secret
    assert (OTX_KEY in repr(source)) is not secret


def test_otx_user_name_cannot_be_made_public() -> None:
    with pytest.raises(SourceError) as info:
        make_source({**OTX, "username_secret": False})
    assert info.value.field == "username_secret" and "API key" in info.value.message


def test_a_bad_secret_user_name_is_not_echoed() -> None:
    with pytest.raises(SourceError) as info:
        make_source({**OTX, "username": OTX_KEY + "\x00"})
    assert info.value.field == "username" and OTX_KEY not in str(info.value)


# -- the faces ------------------------------------------------------------------------------------


def test_stored_encrypted_and_masked_by_cli_and_api_alike(
    db_path: Path, store: FeedStore, api: httpx.Client
) -> None:
    added = api.post("/api/v1/sources", json=OTX)
    assert added.status_code == 201, added.text
    assert added.json()["username"] == SECRET_SET and added.json()["username_secret"] is True
    listed = api.get("/api/v1/sources")
    one = api.get("/api/v1/sources/otx")
    for answer in (added, listed, one):
        assert OTX_KEY not in answer.text
    stored = store.get_source("otx")
    assert stored is not None and stored.username == OTX_KEY  # the poller still has it
    assert OTX_KEY.encode() not in raw_bytes(db_path)

    shown = cli(db_path, "source", "show", "otx")
    listing = cli(db_path, "source", "list")
    assert shown.returncode == 0 and listing.returncode == 0, shown.stderr + listing.stderr
    for result in (shown, listing):
        assert OTX_KEY not in result.stdout + result.stderr
    fields = dict(
        (line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in shown.stdout.splitlines()
    )
    # one rule, one place: the CLI shows what the API returns
    assert fields["username"] == one.json()["username"] == SECRET_SET
    assert fields["username_secret"] == "yes"


def test_a_patch_of_what_get_returned_keeps_the_key(store: FeedStore, api: httpx.Client) -> None:
    api.post("/api/v1/sources", json=OTX)
    shown = api.get("/api/v1/sources/otx").json()
    writable = set(OPENAPI["components"]["schemas"]["SourceChanges"]["properties"])
    back = {k: v for k, v in shown.items() if k in writable}
    answer = api.patch("/api/v1/sources/otx", json={**back, "description": "main feed"})
    assert answer.status_code == 200, answer.text
    stored = store.get_source("otx")
    assert stored is not None and stored.username == OTX_KEY
    assert stored.description == "main feed"
    new = api.post("/api/v1/sources", json={**OTX, "name": "other", "username": SECRET_SET})
    assert new.status_code == 400 and new.json()["field"] == "username"


def test_the_api_takes_the_cli_fields(api: httpx.Client) -> None:
    answer = api.post(
        "/api/v1/sources",
        json={**OTX, "hostname": "hub.example", "password": "s3cret-Pa55word",
              "username": "alice", "username_secret": False, "timeout": "15s"},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["username"], body["username_secret"], body["timeout"]) == ("alice", False, "15s")


def test_the_threat_feed_log_and_the_poll_error_do_not_name_the_key(store: FeedStore) -> None:
    source = make_source({**OTX, "hostname": "127.0.0.1", "port": closed_port(),
                          "use_https": False, "max_retries": 0})  # fmt: skip
    store.add_source(source)
    log = ThreatFeedLog(store, write_file=False)
    result = poll_source(store, source, log)
    assert not result.ok and result.error and OTX_KEY not in result.error
    lines = [e.message for e in store.log_entries("otx")]
    assert lines and not any(OTX_KEY in line for line in lines)


def test_the_openapi_example_holds_no_key() -> None:
    new = OPENAPI["components"]["schemas"]["NewSource"]
    assert "username" in new["example"] and "timeout" in new["example"]
    out = OPENAPI["components"]["schemas"]["Source"]["example"]
    assert out["username"] == SECRET_SET and out["username_secret"] is True


def test_cli_takes_the_key_from_the_environment(db_path: Path, store: FeedStore) -> None:
    add = ("source", "add", "otx", "--hostname", "otx.alienvault.com", "--poll-path",
           "/taxii/poll", "--collection", "user_AlienVault")  # fmt: skip
    result = cli(db_path, *add, "--username-env", "OTX_KEY", env={"OTX_KEY": OTX_KEY})
    assert result.returncode == 0, result.stderr
    assert OTX_KEY not in result.stdout + result.stderr
    stored = store.get_source("otx")
    assert stored is not None and stored.username == OTX_KEY and stored.username_secret
    missing = cli(db_path, *add[:2], "x", *add[3:], "--username-env", "NOT_SET_ANYWHERE")
    assert missing.returncode == 2 and "NOT_SET_ANYWHERE" in missing.stderr
    # the key on the command line still works, but the admin is told where it can be seen
    loud = cli(db_path, *add[:2], "y", *add[3:], "--username", OTX_KEY)
    assert loud.returncode == 0, loud.stderr
    assert "--username-env" in loud.stderr and OTX_KEY not in loud.stderr + loud.stdout
    both = cli(db_path, *add[:2], "z", *add[3:], "--username", "u", "--username-env", "OTX_KEY")
    assert both.returncode == 2


def test_make_source_is_what_a_source_is_written_with() -> None:
    """Edit semantics shared by the CLI and the API: a new user name on a source that had none is
    judged by the rule again; clearing the user name clears the password."""
    plain = make_source({**OTX, "hostname": "hub.example", "username": None,
                         "password": None, "username_secret": False})  # fmt: skip
    assert plain.username_secret is False
    again = make_source({"username": "k3y"}, plain)
    assert again.username_secret is True  # no password: the user name is a key
    real = make_source({"username": "alice", "password": "s3cret-Pa55word"}, plain)
    assert real.username_secret is False
    cleared = make_source({"username": None}, real)
    assert cleared.username is None and cleared.password is None
    assert isinstance(cleared, Source)


def test_a_key_stored_under_another_secret_key_is_kept_and_said(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret key changed: the user name cannot be decrypted, yet the source lists, shows
    masked, keeps the stored token on an unrelated edit, and its poll says how to fix it."""
    feeds = FeedStore(db.engine(str(db_path)))
    feeds.add_source(make_source({**OTX, "port": closed_port(), "max_retries": 0}))
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    found = feeds.get_source("otx")
    assert found is not None and found.username is None
    assert found.unreadable_secrets == {"username"}
    edited = make_source({"description": "x"}, found)
    feeds.update_source(edited)
    again = feeds.get_source("otx")
    assert again is not None and again.unreadable_secrets == {"username"}
    result = poll_source(feeds, again, ThreatFeedLog(feeds, write_file=False))
    assert not result.ok and result.error and "--username-env VAR" in result.error
    fixed = make_source({"username": OTX_KEY}, again)
    feeds.update_source(fixed)
    back = feeds.get_source("otx")
    assert back is not None and back.username == OTX_KEY and not back.unreadable_secrets
    feeds.close()

"""`feedgate source add|list|show|edit|delete|enable|disable` as users run them (processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from feedgate import db as feedgate_db
from feedgate.feeds.store import FeedStore

PASSWORD = "s3cret-Pa55word-xyzzy"
KEY_PASSWORD = "k3y-Pa55word-plugh"


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "feeds.db"
        self.data = tmp_path / "data"
        self.vars = {
            k: v
            for k, v in os.environ.items()
            if k not in ("FEEDGATE_DB", "FEEDGATE_SECRET_KEY", "FEEDGATE_SECRET_KEY_FILE")
        }
        self.vars.update(FEEDGATE_DB=str(self.db), XDG_DATA_HOME=str(self.data), FEED_PW=PASSWORD)

    def run(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "feedgate.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**self.vars, **(env or {})},
            input=stdin,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = self.run(*args, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def store(self) -> FeedStore:
        os.environ["XDG_DATA_HOME"] = str(self.data)  # the same key file as the processes
        return FeedStore(feedgate_db.engine(str(self.db)))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.delenv("FEEDGATE_SECRET_KEY", raising=False)
    monkeypatch.delenv("FEEDGATE_SECRET_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return Env(tmp_path)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("feedgate: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


ADD = ("source", "add", "otx", "--hostname", "OTX.AlienVault.com", "--poll-path", "/taxii/poll")


def add_otx(env: Env, *more: str) -> str:
    return env.ok(
        *ADD, "--collection", "user_AlienVault", "--username", "apikey",
        "--password-env", "FEED_PW", *more,
    )  # fmt: skip


def test_add_list_show(env: Env) -> None:
    out = add_otx(env, "--interval", "30m", "--description", "OTX main feed")
    assert out.strip() == (
        "added source otx: https://otx.alienvault.com/taxii/poll, collection user_AlienVault, "
        "every 30m"
    )
    env.ok(
        "source", "add", "hub", "--hostname", "127.0.0.1", "--port", "9000", "--no-https",
        "--poll-path", "/taxii/poll", "--collection", "user_x", "--disabled",
        "--no-enforce", "md5,sha1", "--age", "2w", "--segment", "12h", "--retries", "0",
    )  # fmt: skip

    lines = env.ok("source", "list").splitlines()
    assert lines[0].split() == [
        "NAME", "ENABLED", "MODE", "HOST", "COLLECTION", "INTERVAL", "LAST", "POLL"
    ]  # fmt: skip
    assert lines[1].split() == ["hub", "no", "enforce", "127.0.0.1:9000", "user_x", "1h", "never"]
    assert lines[2].split() == [
        "otx",
        "yes",
        "enforce",
        "otx.alienvault.com",
        "user_AlienVault",
        "30m",
        "never",
    ]

    shown = dict(
        (line.split(":", 1)[0], line.split(":", 1)[1].strip())
        for line in env.ok("source", "show", "otx").splitlines()
    )
    assert shown["hostname"] == "otx.alienvault.com"
    assert shown["description"] == "OTX main feed"
    assert shown["username"] == "(secret, set)"  # OTX: the user name is the API key
    assert shown["username_secret"] == "yes"
    assert shown["timeout"] == "1m"
    assert shown["password"] == "********"
    assert shown["key_password"] == "-"
    assert shown["polling_interval"] == "30m" and shown["age"] == "30d"
    assert shown["enforce"] == "cidr, domain, email, ipv4, ipv6, md5, sha1, sha256, url"
    assert shown["endpoint"] == "https://otx.alienvault.com/taxii/poll"
    assert shown["last_poll"] == "never"

    hub = env.store().get_source("hub")
    assert hub is not None and not hub.enabled and not hub.use_https and hub.port == 9000
    assert hub.enforce == {"cidr", "domain", "email", "ipv4", "ipv6", "sha256", "url"}
    assert (hub.age, hub.poll_segment, hub.max_retries) == (
        timedelta(days=14),
        timedelta(hours=12),
        0,
    )
    otx = env.store().get_source("otx")
    assert otx is not None and otx.password == PASSWORD  # decrypted by the store in this process


def test_password_is_never_shown_nor_stored_in_clear(env: Env) -> None:
    env.ok(
        *ADD, "--collection", "c", "--username", "apikey", "--password-env", "FEED_PW",
        "--cert", "/etc/c.pem", "--key", "/etc/k.pem", "--key-password-env", "KEY_PW",
        env={"KEY_PW": KEY_PASSWORD},
    )  # fmt: skip
    for args in (("source", "show", "otx"), ("source", "list"), ("-v", "source", "show", "otx")):
        result = env.run(*args)
        assert result.returncode == 0
        assert PASSWORD not in result.stdout + result.stderr
        assert KEY_PASSWORD not in result.stdout + result.stderr
    shown = env.ok("source", "show", "otx")
    assert "key_password:     ********" in shown and "password:         ********" in shown
    raw = b"".join(p.read_bytes() for p in env.db.parent.glob("feeds.db*"))
    assert raw, "no database bytes"
    for secret in (PASSWORD, KEY_PASSWORD):
        assert secret.encode() not in raw
        assert secret.encode("utf-16-le") not in raw
    assert b"otx.alienvault.com" in raw  # the bytes were really read
    assert b"apikey" not in raw  # OTX's user name is its API key: encrypted too
    key_file = env.data / "feedgate" / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_password_prompt(env: Env) -> None:
    result = env.run(
        *ADD, "--collection", "c", "--username", "u", "--password-prompt",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    stored = env.store().get_source("otx")
    assert stored is not None and stored.password == PASSWORD


def test_no_password_on_the_command_line(env: Env) -> None:
    result = env.run(*ADD, "--collection", "c", "--username", "u", "--password", PASSWORD)
    assert result.returncode == 2
    assert "No such option '--password'" in result.stderr


def test_edit_enable_disable_delete(env: Env) -> None:
    add_otx(env)
    out = env.ok(
        "source", "edit", "otx", "--interval", "2h", "--no-enforce", "ipv4",
        "--proxy-url", "http://proxy.example:3128", "--port", "8443", "--description", "d",
    )  # fmt: skip
    assert out.strip() == (
        "updated source otx: description - -> d; port 443 -> 8443; proxy_url - ->"
        " http://proxy.example:3128; polling_interval 1h -> 2h; enforce -ipv4"
    )  # what changed, in source show's words
    source = env.store().get_source("otx")
    assert source is not None
    assert source.polling_interval == timedelta(hours=2)
    assert "ipv4" not in source.enforce and "ipv6" in source.enforce
    assert source.proxy_url == "http://proxy.example:3128" and source.port == 8443
    assert source.password == PASSWORD and source.collection == "user_AlienVault"  # kept

    out = env.ok("source", "edit", "otx", "--enforce", "ipv4", "--proxy-url", "")
    assert out.strip() == (
        "updated source otx: proxy_url http://proxy.example:3128 -> -; enforce +ipv4"
    )
    source = env.store().get_source("otx")
    assert source is not None and "ipv4" in source.enforce and source.proxy_url is None
    assert env.ok("source", "edit", "otx").strip() == "source otx: nothing changed"

    out = env.ok("source", "edit", "otx", "--no-fp-gate", "--username-env", "NEW_KEY",
                 env={"NEW_KEY": "new-api-key-0123"})  # fmt: skip
    assert out.strip() == "updated source otx: username (secret, changed); fp_gate yes -> no"
    assert "new-api-key-0123" not in out and "apikey" not in out
    out = env.ok("source", "edit", "otx", "--password-env", "OTHER_PW", env={"OTHER_PW": "p2"})
    assert out.strip() == "updated source otx: password (secret, changed)"
    out = env.ok("source", "edit", "otx", "--no-password")
    assert out.strip() == "updated source otx: password (secret, removed)"
    source = env.store().get_source("otx")
    assert source is not None and source.password is None
    assert source.username == "new-api-key-0123" and source.fp_gate is False

    assert env.ok("source", "disable", "otx").strip() == "source otx disabled"
    assert env.ok("source", "list").splitlines()[1].split()[1] == "no"
    assert env.ok("source", "enable", "otx").strip() == "source otx enabled"
    assert env.ok("source", "list").splitlines()[1].split()[1] == "yes"

    assert env.ok("source", "delete", "otx").strip() == "deleted source otx"
    assert env.ok("source", "list").startswith("no sources")
    for command in ("delete", "show", "enable", "disable", "edit"):
        result = env.run("source", command, "otx")
        assert result.returncode == 1
        assert "no source named 'otx'" in one_error_line(result)


def test_duplicate_name_is_one_line(env: Env) -> None:
    add_otx(env)
    result = env.run(*ADD, "--collection", "other")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "a source named otx exists" in line and "feedgate source edit otx" in line


@pytest.mark.parametrize(
    ("args", "field", "words"),
    [
        (
            ("--hostname", "https://otx.alienvault.com/taxii"),
            "hostname (--hostname)",
            "--poll-path",
        ),
        (("--poll-path", "taxii/poll"), "poll_path (--poll-path)", "must start with '/'"),
        (("--port", "70000"), "port (--port)", "1 to 65535"),
        (("--interval", "1m"), "polling_interval (--interval)", "at most every 5m"),
        (("--interval", "sixty"), "polling_interval (--interval)", "not a duration"),
        (("--segment", "40d"), "poll_segment (--segment)", "longer than the age"),
        (("--age", "0d"), "age (--age)", "more than zero"),
        (("--retries", "11"), "max_retries (--retries)", "0 to 10"),
        (("--collection", " "), "collection (--collection)", "empty"),
        (("--key", "/k.pem"), "key_file (--key)", "--cert"),
        (("--proxy-url", "proxy:3128"), "proxy_url (--proxy-url)", "http://host:port"),
    ],
)
def test_bad_values_exit_1_naming_the_field(
    env: Env, args: tuple[str, ...], field: str, words: str
) -> None:
    base = {"--hostname": "h.example", "--poll-path": "/p", "--collection": "c"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    options = [item for key, value in {**base, **given}.items() for item in (key, value)]
    result = env.run("source", "add", "x", *options)
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"feedgate: error: {field}: ")
    assert words in line
    assert not env.db.exists() or env.ok("source", "list").startswith("no sources")


def test_bad_name_and_bad_edit(env: Env) -> None:
    result = env.run("source", "add", "my feed", "--hostname", "h", "--poll-path", "/p",
                     "--collection", "c")  # fmt: skip
    assert result.returncode == 1
    assert one_error_line(result).startswith("feedgate: error: name (NAME): 'my feed' ")
    add_otx(env)
    result = env.run("source", "edit", "otx", "--segment", "60d")
    assert result.returncode == 1
    assert "poll_segment (--segment)" in one_error_line(result)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--port", "abc"), "'--port'"),
        (("--taxii-version", "2.0"), "'--taxii-version'"),
        (("--enforce", "mutex"), "--enforce"),
        (("--password-env", "NOT_SET_ANYWHERE"), "--password-env"),
        (("--password-env", "FEED_PW", "--password-prompt"), "not both"),
    ],
)
def test_usage_errors_exit_2(env: Env, args: tuple[str, ...], words: str) -> None:
    result = env.run(*ADD, "--collection", "c", "--username", "u", *args)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_required_options_exit_2(env: Env) -> None:
    result = env.run("source", "add", "otx", "--hostname", "h")
    assert result.returncode == 2
    assert "--poll-path" in result.stderr or "--collection" in result.stderr


def test_db_option_and_group_option(env: Env, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    env.ok(*ADD, "--collection", "c", "--db", str(other))
    assert "otx" in env.ok("source", "--db", str(other), "list")
    listed = env.run("source", "list")  # the default database: not made by a command that reads
    assert listed.returncode == 1 and "no such database" in listed.stderr


def test_changed_key_is_said_clearly(env: Env) -> None:
    add_otx(env)
    other = {"FEEDGATE_SECRET_KEY": "another key"}
    shown = env.run("source", "show", "otx", env=other)  # still shows (and edits, and lists)
    assert shown.returncode == 0, shown.stderr
    assert "cannot be decrypted with the current secret key" in shown.stdout
    polled = env.run("poll", "otx", env=other)
    assert polled.returncode == 1
    said = polled.stdout + polled.stderr
    assert "key changed" in said and "source edit otx --password-env VAR" in said
    assert "another key" not in said + shown.stdout and PASSWORD not in said + shown.stdout


def test_status_shows_in_list_and_show(env: Env) -> None:
    from datetime import UTC, datetime

    add_otx(env)
    store = env.store()
    moment = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    store.set_status("otx", last_start=moment, last_end=moment, result="error",
                     error="TAXII status UNAUTHORIZED: bad key")  # fmt: skip
    line = env.ok("source", "list").splitlines()[1]
    assert line.endswith("error 2026-11-01 12:00:00Z: TAXII status UNAUTHORIZED: bad key")
    shown = env.ok("source", "show", "otx")
    assert "last_error:       TAXII status UNAUTHORIZED: bad key" in shown

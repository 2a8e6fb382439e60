"""`feedgate admin add|list|delete|set-password` as an admin runs them (processes): passwords
only from the environment or a hidden prompt, never printed; short or empty ones refused naming
the option; the users it makes log in through ConsoleUsers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clean_env import clean_env
from feedgate.db import engine
from feedgate.feeds.console_users import ConsoleUsers, LoginRefused

PASSWORD = "a-console-Pa55word"
NEW_PASSWORD = "another-console-Pa55word"


class Admin:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "feeds.db"
        self.env = clean_env(
            FEEDGATE_DB=str(self.db),
            XDG_DATA_HOME=str(tmp_path / "data"),
            CONSOLE_PW=PASSWORD,
            NEW_PW=NEW_PASSWORD,
            SHORT_PW="tiny-pw",
            EMPTY_PW="",
        )

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "feedgate.cli", "admin", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env,
            input=stdin,
        )

    def users(self) -> ConsoleUsers:
        return ConsoleUsers(engine(str(self.db)))


@pytest.fixture
def admin(tmp_path: Path) -> Admin:
    return Admin(tmp_path)


def test_add_list_set_password_delete(admin: Admin) -> None:
    done = admin.run("add", "alice", "--password-env", "CONSOLE_PW")
    assert (done.returncode, done.stdout) == (0, "added console user alice\n"), done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    users = admin.users()
    token = users.login("alice", PASSWORD, "192.0.2.1").token

    listed = admin.run("list")
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ADDED", "PASSWORD", "CHANGED", "LAST", "LOGIN"]
    assert row.startswith("alice ") and "Z" in row and PASSWORD not in listed.stdout

    changed = admin.run("set-password", "alice", "--password-env", "NEW_PW")
    assert changed.returncode == 0, changed.stderr
    assert "sessions have ended" in changed.stdout and NEW_PASSWORD not in changed.stdout
    assert users.session(token) is None
    assert users.verify("alice", NEW_PASSWORD) and not users.verify("alice", PASSWORD)

    deleted = admin.run("delete", "alice")
    assert (deleted.returncode, deleted.stdout) == (0, "deleted console user alice\n")
    with pytest.raises(LoginRefused):
        users.login("alice", NEW_PASSWORD, "192.0.2.1")
    assert "no console users (add one with: feedgate admin add" in admin.run("list").stdout


def test_the_password_prompt_is_hidden_and_asked_twice(admin: Admin) -> None:
    done = admin.run("add", "bob", "--password-prompt", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert admin.users().verify("bob", PASSWORD)


@pytest.mark.parametrize(
    ("var", "said"),
    [
        ("SHORT_PW", "the password has 7 characters: it needs at least 12"),
        ("EMPTY_PW", "the password is empty"),
        ("UNSET_PW", "environment variable UNSET_PW is not set"),
    ],
)
def test_empty_short_or_missing_passwords_are_refused_naming_the_option(
    admin: Admin, var: str, said: str
) -> None:
    done = admin.run("add", "carol", "--password-env", var)
    assert done.returncode == 2 and "--password-env" in done.stderr and said in done.stderr
    assert "tiny-pw" not in done.stderr  # the value is never echoed
    assert not admin.db.exists()  # nothing was made


def test_refusals_are_one_line(admin: Admin) -> None:
    no_password = admin.run("add", "dave")
    assert no_password.returncode == 2 and "--password-env VAR or --password-prompt" in (
        no_password.stderr
    )
    bad_name = admin.run("add", "bad name", "--password-env", "CONSOLE_PW")
    assert bad_name.returncode == 2 and "user name 'bad name': 1 to 64 letters" in bad_name.stderr
    assert admin.run("add", "dave", "--password-env", "CONSOLE_PW").returncode == 0
    twice = admin.run("add", "dave", "--password-env", "CONSOLE_PW")
    assert twice.returncode == 1 and twice.stderr.count("\n") == 1
    assert "a console user named dave exists" in twice.stderr and "set-password" in twice.stderr
    for args in (("delete", "erin"), ("set-password", "erin", "--password-env", "NEW_PW")):
        missing = admin.run(*args)
        assert missing.returncode == 1 and "no console user named" in missing.stderr
        assert missing.stderr.count("\n") == 1


def test_a_reader_does_not_make_a_missing_database(admin: Admin) -> None:
    done = admin.run("list")
    assert done.returncode == 1 and "no such database" in done.stderr
    assert not admin.db.exists()

"""`feedgate serve` serves the console at / on the API's port and says where (before the API:
line, which scripts read up to); what `serve` and `up` say of the console's users
(cli.admin.console_login): `up`'s first start makes admin and shows its password once."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from argon2 import PasswordHasher

from clean_env import clean_env
from feedgate.cli.admin import FIRST_ADMIN, console_login
from feedgate.db import engine
from feedgate.feeds.console_users import ConsoleUsers

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
TOKEN = "serve-console-token-0123456789abcdefghij"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_serve_serves_the_console_and_says_where(tmp_path: Path) -> None:
    env = clean_env(
        XDG_DATA_HOME=str(tmp_path / "data"),
        FEEDGATE_DB=str(tmp_path / "feeds.db"),
        FEEDGATE_API_TOKEN=TOKEN,
        NO_PROXY="127.0.0.1",
    )
    serve = subprocess.Popen(
        [FEEDGATE, "serve", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        assert serve.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lines and lines[-1].startswith("API:")):
            line = serve.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert lines and lines[-1].startswith("API:"), lines
        console = re.fullmatch(r"console:\s+(http://127\.0\.0\.1:\d+)/  \((.*)\)\n", lines[-2])
        assert console, lines
        assert console.group(2) == "no console user yet: feedgate admin add NAME --password-env VAR"
        base = console.group(1)
        assert f"API:       {base}/api/v1/" in lines[-1]
        home = httpx.get(base + "/", follow_redirects=True)
        assert home.status_code == 200 and home.url.path == "/login"
        assert "Log in" in home.text and home.headers["content-security-policy"]
        assert httpx.get(base + "/api/v1/sources").status_code == 401  # the API as before
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=30)


def test_up_makes_admin_once_and_later_starts_say_it_exists(tmp_path: Path) -> None:
    users = ConsoleUsers(engine(str(tmp_path / "feeds.db")), hasher=CHEAP)
    first = console_login(users, first_admin=True)
    said = re.fullmatch(r"user admin, password (\S+); shown once", first)
    assert said, first
    assert users.verify(FIRST_ADMIN, said.group(1)) and len(said.group(1)) >= 22
    again = console_login(users, first_admin=True)
    assert again == (
        "user admin exists, made earlier; a new password: feedgate admin set-password admin "
        "--password-env VAR"
    )
    assert said.group(1) not in again and [u.name for u in users.list()] == [FIRST_ADMIN]


def test_serve_makes_no_user_and_names_those_there_are(tmp_path: Path) -> None:
    users = ConsoleUsers(engine(str(tmp_path / "feeds.db")), hasher=CHEAP)
    assert console_login(users, first_admin=False).startswith("no console user yet")
    assert users.list() == []
    users.add("alice", "alice's long password")
    users.add("bob", "bob's long password!")
    assert console_login(users, first_admin=True) == (
        "users alice, bob exist; a new password: feedgate admin set-password NAME "
        "--password-env VAR"
    )
    assert [u.name for u in users.list()] == ["alice", "bob"]  # up made no admin beside them

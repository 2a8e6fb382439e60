"""An admin's day with the `feedgate` command, misuse included (real processes, 127.0.0.1):
each failure is one clear line with the right exit status, a server stops on Ctrl-C or SIGTERM
with exit 0, and nothing the user stored is lost."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clean_env import clean_env

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
TAXII_POLL = str(Path(sys.executable).parent / "taxii-poll")


def walk_env(tmp_path: Path, **more: str) -> dict[str, str]:
    settings = {
        "FEEDGATE_DB": str(tmp_path / "feeds.db"),
        "FEEDGATE_HUB_DB": str(tmp_path / "hub.db"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "NO_PROXY": "127.0.0.1",
    }
    return clean_env(**{**settings, **more})


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FEEDGATE, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("feedgate: error: "), result.stderr
    return lines[0]


def not_a_directory(tmp_path: Path) -> Path:
    """A path under a regular file: no one (root included) can make a directory there."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory\n")
    return blocker / "sub"


@dataclass
class Hub:
    env: dict[str, str]
    port: int
    key: str


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A hub with no pulses: the user gateway's own collection, user_gateway, is empty."""
    tmp = tmp_path_factory.mktemp("hub")
    env = walk_env(tmp)
    key = run(env, "hub", "user", "add", "gateway").stdout.strip()
    assert key
    server = subprocess.Popen(
        [FEEDGATE, "hub", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        found = re.search(r"127\.0\.0\.1:(\d+) ", server.stdout.readline())
        assert found
        yield Hub(env, int(found.group(1)), key)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def add_source(env: dict[str, str], hub: Hub, name: str = "local", *more: str) -> None:
    added = run(
        {**env, "HUB_KEY": "x"},
        "source", "add", name, "--hostname", "127.0.0.1", "--port", str(hub.port),
        "--no-https", "--poll-path", "/taxii/poll", "--collection", "user_gateway",
        "--username", hub.key, "--password-env", "HUB_KEY", *more,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


# --- servers stop on Ctrl-C and SIGTERM ----------------------------------------------------------


def start_and_stop(
    env: dict[str, str], args: list[str], ready: str, sig: signal.Signals
) -> subprocess.CompletedProcess[str]:
    """Start a server, wait until it prints ``ready``, send ``sig``; its output and status."""
    proc = subprocess.Popen(
        [FEEDGATE, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a process started in the background ignores SIGINT unless told otherwise
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen.append(line)
        if not line or line.startswith(ready):
            break
    assert seen[-1].startswith(ready), "".join(seen)
    proc.send_signal(sig)  # printed once its handlers are in place: no wait needed
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + out, err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_stops_cleanly_with_exit_0(tmp_path: Path, sig: signal.Signals) -> None:
    env = walk_env(tmp_path)
    done = start_and_stop(env, ["serve", "--port", "0"], "API token:", sig)
    assert done.returncode == 0, done.stderr
    assert "Aborted" not in done.stderr and "Traceback" not in done.stderr


def test_hub_serve_stops_on_ctrl_c_with_exit_0(tmp_path: Path) -> None:
    env = walk_env(tmp_path)
    done = start_and_stop(env, ["hub", "serve", "--port", "0"], "hub on ", signal.SIGINT)
    assert done.returncode == 0, done.stderr
    assert "Aborted" not in done.stderr


# --- serve and up: unusable databases and ports are one line --------------------------------------


def test_serve_with_an_unusable_database_is_one_line(tmp_path: Path) -> None:
    env = walk_env(tmp_path)
    bad = not_a_directory(tmp_path) / "feeds.db"
    line = one_error_line(run(env, "serve", "--port", "0", "--db", str(bad)))
    assert line.startswith(f"feedgate: error: database {bad}: ")
    refused = run(env, "serve", "--port", "0", "--db", "postgresql://u:pw-xyzzy@127.0.0.1:1/x")
    assert "pw-xyzzy" not in one_error_line(refused)
    assert "unsupported database 'mysql'" in one_error_line(
        run(env, "serve", "--port", "0", "--db", "mysql://h/d")
    )


def test_up_with_an_unwritable_data_directory_is_one_line(tmp_path: Path) -> None:
    env = walk_env(tmp_path, XDG_DATA_HOME=str(not_a_directory(tmp_path)))
    del env["FEEDGATE_DB"], env["FEEDGATE_HUB_DB"]
    line = one_error_line(run(env, "up", "--port", "0", "--gateway-port", "0"))
    assert "hub.db" in line


def test_serve_and_up_on_a_busy_port_say_so_before_doing_anything(tmp_path: Path) -> None:
    env = walk_env(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        for args, option in (
            (("serve", "--port", port), "--port"),
            (("up", "--port", port, "--gateway-port", "0"), "--port"),
            (("up", "--port", "0", "--gateway-port", port), "--gateway-port"),
            (("gateway", "--listen", f"127.0.0.1:{port}", "--relay", "127.0.0.1:1"), "--listen"),
        ):
            line = one_error_line(run(env, *args))
            assert f"cannot listen on 127.0.0.1:{port}" in line, line
            assert f"choose another with {option}," in line, line
    assert not (tmp_path / "hub.db").exists()  # up seeded nothing


# --- the threat-feed log file ---------------------------------------------------------------------


def test_poll_with_an_unwritable_log_file_warns_once_and_polls(tmp_path: Path, hub: Hub) -> None:
    env = walk_env(tmp_path)
    add_source(env, hub)
    (tmp_path / "data" / "feedgate" / "threat-feed.log").mkdir(parents=True)  # not a file
    polled = run(env, "poll", "local")
    assert polled.returncode == 0, polled.stdout + polled.stderr
    assert "0 observables read" in polled.stdout  # an empty collection is no error
    warnings = polled.stderr.strip().splitlines()
    assert len(warnings) == 1 and "cannot write the threat-feed log file" in warnings[0]
    assert "poll done" in run(env, "log").stdout  # the database still has the log

    elsewhere = walk_env(
        tmp_path,
        XDG_DATA_HOME=str(not_a_directory(tmp_path)),
        FEEDGATE_SECRET_KEY_FILE=str(tmp_path / "data" / "feedgate" / "secret.key"),
    )
    again = run(elsewhere, "poll", "local")
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


# --- a URL the HTTP library refuses ---------------------------------------------------------------


def test_a_url_too_long_for_http_is_one_error_not_a_traceback(tmp_path: Path) -> None:
    url = "http://127.0.0.1:1/" + "x" * 70_000
    done = subprocess.run(
        [TAXII_POLL, "--path", url, "-c", "c"],
        env=walk_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "not a usable URL" in done.stderr and f"({len(url)} characters)" in done.stderr


# --- sources: delete, poll --all, list, log ---------------------------------------------------


def add_offline(env: dict[str, str], name: str, *more: str) -> None:
    added = run(
        {**env, "PW": "pw-plugh"},
        "source", "add", name, "--hostname", "feed.example", "--poll-path", "/taxii/poll",
        "--collection", "c", "--username", "u", "--password-env", "PW", *more,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def test_a_source_whose_credentials_no_longer_decrypt_can_still_be_deleted(
    tmp_path: Path,
) -> None:
    env = walk_env(tmp_path)
    add_offline(env, "old")
    other = {**env, "FEEDGATE_SECRET_KEY_FILE": str(tmp_path / "another.key")}
    assert "cannot be decrypted" in run(other, "source", "show", "old").stdout
    deleted = run(other, "source", "delete", "old")
    assert deleted.returncode == 0, deleted.stderr
    assert "no sources" in run(env, "source", "list").stdout
    assert "no source named 'old'" in one_error_line(run(env, "source", "delete", "old"))
    assert "its observables" in run(env, "source", "delete", "--help").stdout


def test_poll_all_with_nothing_enabled_says_so(tmp_path: Path) -> None:
    env = walk_env(tmp_path)
    add_offline(env, "off", "--disabled")
    done = run(env, "poll", "--all")
    assert done.returncode == 0 and done.stdout == ""
    assert "no enabled source to poll" in done.stderr
    both = run(env, "poll", "off", "--all")
    assert both.returncode == 2 and "not both" in both.stderr


def test_source_list_cuts_long_values_show_has_them_whole(tmp_path: Path) -> None:
    env = walk_env(tmp_path)
    add_offline(env, "long", "--collection", "c" * 5000)
    add_offline(env, "short")
    lines = run(env, "source", "list").stdout.splitlines()
    assert max(len(line) for line in lines) < 200
    assert any("c" * 39 + "…" in line for line in lines)
    assert "c" * 5000 in run(env, "source", "show", "long").stdout


def test_log_of_an_unknown_source_is_an_error_of_a_quiet_one_is_not(tmp_path: Path) -> None:
    env = walk_env(tmp_path)
    add_offline(env, "quiet")
    quiet = run(env, "log", "--source", "quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    line = one_error_line(run(env, "log", "--source", "qiuet"))
    assert "no log rows for 'qiuet'" in line and "feedgate source list" in line


def test_search_text_has_a_bound(tmp_path: Path) -> None:
    env = walk_env(tmp_path)
    long = run(env, "observables", "--search", "x" * 1001)
    assert long.returncode == 2 and "at most 1000" in long.stderr
    assert run(env, "db", "upgrade").returncode == 0  # a database to search in
    assert run(env, "observables", "--search", "x" * 1000).returncode == 0


# --- a database that cannot be opened says why --------------------------------------------------


def test_a_database_that_cannot_be_opened_says_why_and_what_to_do(tmp_path: Path) -> None:
    env = walk_env(tmp_path)
    for args in (("source", "list"), ("observables",), ("log",), ("db", "upgrade")):
        line = one_error_line(run(env, *args, "--db", str(tmp_path)))
        assert f"{tmp_path} is a directory: give the path of a file" in line, line
    refused = one_error_line(run(env, "source", "list", "--db", "postgresql://u@127.0.0.1:1/x"))
    assert "(psycopg" not in refused and "Connection refused" in refused
    if os.geteuid() != 0:  # root writes anywhere: this part runs for other users
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            line = one_error_line(run(env, "source", "list", "--db", str(locked / "f.db")))
            assert f"the directory {locked} cannot be written" in line
        finally:
            locked.chmod(0o755)


def test_https_to_a_plain_http_hub_says_to_drop_https(tmp_path: Path, hub: Hub) -> None:
    env = walk_env(tmp_path)
    add_source(env, hub, "tls", "--https", "--retries", "0")
    polled = run(env, "poll", "tls")
    assert polled.returncode == 1
    assert "plain HTTP, not HTTPS: connect without HTTPS" in polled.stdout
    assert hub.key not in polled.stdout + polled.stderr

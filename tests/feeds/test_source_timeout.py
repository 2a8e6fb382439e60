"""A source's per-request timeout (issue 11, item 6f): a server that accepts and never answers
used to cost a silent 254 s (four 60 s reads and the backoffs between them) before the poll
failed; the timeout is now a field of the source, shown, validated, and what the poller gives
the TAXII client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from feedgate.feeds import secrets
from feedgate.feeds.sources import Source, SourceError, make_source, validate


@contextmanager
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 whose server accepts every connection and never sends a byte."""
    held: list[socket.socket] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def feedgate(db_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feedgate.cli", *args, "--db", str(db_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_a_silent_server_fails_the_poll_after_the_source_timeout(tmp_path: Path) -> None:
    env = {secrets.KEY_ENV: secrets.generate_key(), "NO_PROXY": "127.0.0.1"}
    db_path = tmp_path / "feeds.db"
    with silent_server() as port:
        added = feedgate(
            db_path, "source", "add", "mute", "--hostname", "127.0.0.1", "--port", str(port),
            "--no-https", "--poll-path", "/taxii/poll", "--collection", "c", "--retries", "0",
            "--timeout", "1s", env=env,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        shown = feedgate(db_path, "source", "show", "mute", env=env)
        assert "timeout:" in shown.stdout and " 1s" in shown.stdout
        started = time.monotonic()
        polled = feedgate(db_path, "poll", "mute", env=env)
        took = time.monotonic() - started
    assert polled.returncode == 1
    text = polled.stdout + polled.stderr
    assert "no answer within the read timeout of 1 s" in text, text
    assert took < 60, f"the poll took {took:.0f} s: the source's timeout was not used"


def test_default_is_60_seconds_and_shown(tmp_path: Path) -> None:
    assert Source(name="a", hostname="h", collection="c").timeout == timedelta(seconds=60)
    env = {secrets.KEY_ENV: secrets.generate_key()}
    db_path = tmp_path / "feeds.db"
    add = ("source", "add", "a", "--hostname", "h.example", "--poll-path", "/p",
           "--collection", "c")  # fmt: skip
    assert feedgate(db_path, *add, env=env).returncode == 0
    shown = feedgate(db_path, "source", "show", "a", env=env).stdout
    assert any(line.split() == ["timeout:", "1m"] for line in shown.splitlines()), shown
    edited = feedgate(db_path, "source", "edit", "a", "--timeout", "2m", env=env)
    assert edited.returncode == 0, edited.stderr
    shown = feedgate(db_path, "source", "show", "a", env=env).stdout
    assert any(line.split() == ["timeout:", "2m"] for line in shown.splitlines()), shown
    bad = feedgate(db_path, "source", "edit", "a", "--timeout", "0s", env=env)
    assert bad.returncode == 1 and "timeout (--timeout)" in bad.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [("0s", "at least 1s"), ("2h", "at most 30m"), ("abc", "not a duration")],
)
def test_timeout_bounds(text: str, words: str) -> None:
    base = {"name": "a", "hostname": "h.example", "collection": "c"}
    with pytest.raises(SourceError) as info:
        make_source({**base, "timeout": text})
    assert info.value.field == "timeout" and words in info.value.message
    assert make_source({**base, "timeout": "30m"}).timeout == timedelta(minutes=30)
    assert validate(Source(**base, timeout=timedelta(seconds=1))).timeout.total_seconds() == 1

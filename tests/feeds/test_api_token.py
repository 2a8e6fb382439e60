"""The REST API's token as ``feedgate serve`` and ``feedgate up`` handle it (real processes):
a supplied one is never printed, a short one is refused, a generated one is shown on the start
that made it and kept 0600 for the next starts, which only say where it is."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from clean_env import clean_env

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
SUPPLIED = "supplied-token-0123456789abcdefghijklmnop"


def environment(tmp_path: Path, **more: str) -> dict[str, str]:
    env = clean_env()
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        FEEDGATE_DB=str(tmp_path / "feeds.db"),
        FEEDGATE_HUB_DB=str(tmp_path / "hub.db"),
        NO_PROXY="127.0.0.1",
    )
    return {**env, **more}


@contextmanager
def started(env: dict[str, str], *args: str) -> Iterator[tuple[str, list[str]]]:
    """A server started with ``args``, until it has said its API token: its API's URL and
    everything it said (stdout and stderr); stopped with Ctrl-C at the end."""
    proc = subprocess.Popen(
        [FEEDGATE, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    said: list[str] = []
    try:
        while not said or not said[-1].startswith("API token:"):
            line = proc.stdout.readline()
            assert line, "".join(said)
            said.append(line)
        found = re.search(r"^API:\s+(http://\S+)/api/v1/", "".join(said), re.M)
        assert found, "".join(said)
        yield found.group(1), said
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        said.append(rest)
    assert proc.returncode == 0, "".join(said)


def works(base: str, token: str) -> bool:
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.get(f"{base}/api/v1/sources", headers=headers, trust_env=False)
    return answer.status_code == 200


def test_a_supplied_token_is_never_printed(tmp_path: Path) -> None:
    """serve printed FEEDGATE_API_TOKEN's value on every start, into logs and scrollback."""
    env = environment(tmp_path, FEEDGATE_API_TOKEN=SUPPLIED)
    with started(env, "serve", "--port", "0") as (base, said):
        assert works(base, SUPPLIED)
    assert "API token: from FEEDGATE_API_TOKEN" in "".join(said)
    assert SUPPLIED not in "".join(said)
    assert not (tmp_path / "data" / "feedgate" / "api-token").exists()


@pytest.mark.parametrize("command", ["serve", "up"])
def test_a_short_token_is_refused_in_one_line(tmp_path: Path, command: str) -> None:
    """A 1-character FEEDGATE_API_TOKEN was taken: anyone could guess it."""
    env = environment(tmp_path, FEEDGATE_API_TOKEN="sesame-31-characters-long-xxxxx")
    ports = ["--port", "0", *(["--gateway-port", "0"] if command == "up" else [])]
    done = subprocess.run(
        [FEEDGATE, command, *ports], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("feedgate: error: FEEDGATE_API_TOKEN") and "32" in line
    assert "sesame" not in done.stdout + done.stderr


def test_up_shows_a_generated_token_once_and_keeps_it_0600(tmp_path: Path) -> None:
    env = environment(tmp_path)
    env.pop("FEEDGATE_DB")
    env.pop("FEEDGATE_HUB_DB")
    kept = tmp_path / "data" / "feedgate" / "api-token"
    with started(env, "up", "--port", "0", "--gateway-port", "0", "--pulses", "1") as (base, said):
        token = kept.read_text().strip()
        assert len(token) >= 32 and works(base, token)
    first = "".join(said)
    assert first.count(token) == 1 and f"API token: {token}" in first
    assert str(kept) in first
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700

    with started(env, "up", "--port", "0", "--gateway-port", "0", "--pulses", "1") as (base, said):
        assert works(base, token)  # the same token: clients configured with it still work
    again = "".join(said)
    assert token not in again
    assert f"API token: in {kept}" in again


def test_a_kept_token_others_can_read_is_refused(tmp_path: Path) -> None:
    env = environment(tmp_path)
    kept = tmp_path / "data" / "feedgate" / "api-token"
    kept.parent.mkdir(parents=True)
    kept.write_text("k" * 40 + "\n")
    kept.chmod(0o644)
    done = subprocess.run(
        [FEEDGATE, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert str(kept) in line and "chmod 600" in line
    assert "k" * 40 not in done.stdout + done.stderr

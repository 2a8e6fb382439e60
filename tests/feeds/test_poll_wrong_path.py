"""A source whose poll path is wrong (the vendor's own typo, ``/taxi/poll``) is not left with a
bare "HTTP 404": ``feedgate poll``, the threat-feed log and the source's status say to check
--poll-path and name the poll service that discovery at the host lists. Against a real hub."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clean_env import clean_env
from feedgate import db
from feedgate.asgi_server import serving
from feedgate.hub.app import create_app
from feedgate.hub.store import HubStore

FEEDGATE = str(Path(sys.executable).parent / "feedgate")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A hub with one user and no pulses: (its URL, the user's API key)."""
    store = HubStore(db.engine(str(tmp_path_factory.mktemp("hub") / "hub.db")))
    _, key = store.create_user("gateway")
    assert key is not None
    with serving(create_app(store)) as url:
        yield url, key


def feedgate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    env.update(
        FEEDGATE_DB=str(tmp_path / "feeds.db"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        NO_PROXY="127.0.0.1",
        HUB_KEY="x",
    )
    return subprocess.run(
        [FEEDGATE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_mistyped_poll_path_is_named_with_the_right_one(
    hub: tuple[str, str], tmp_path: Path
) -> None:
    url, key = hub
    port = url.rsplit(":", 1)[1]
    added = feedgate(
        tmp_path,
        "source", "add", "vendor", "--hostname", "127.0.0.1", "--port", port, "--no-https",
        "--poll-path", "/taxi/poll", "--collection", "user_gateway",
        "--username", key, "--password-env", "HUB_KEY",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    hint = (
        f"HTTP 404 at /taxi/poll: check --poll-path; discovery at {url}/taxii/discovery"
        " lists poll services at /taxii/poll"
    )
    polled = feedgate(tmp_path, "poll", "vendor")
    assert polled.returncode == 1
    assert hint in polled.stdout + polled.stderr
    assert hint in feedgate(tmp_path, "log", "--source", "vendor").stdout
    assert hint in feedgate(tmp_path, "source", "show", "vendor").stdout

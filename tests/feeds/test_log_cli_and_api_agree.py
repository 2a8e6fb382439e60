"""``feedgate log`` and ``GET /api/v1/log`` list the same rows for the same source, limit and
order (one store query under both); the newest rows can be asked for, and a limit holds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clean_env import clean_env
from feedgate import db
from feedgate.asgi_server import serving
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.store import FeedStore
from feedgate.web.api import create_api

FEEDGATE = str(Path(sys.executable).parent / "feedgate")
TOKEN = "log-test-token-0123456789abcdefghijkl"
ROWS = 25


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A database whose log has ``ROWS`` rows each for sources a and b, interleaved; and the
    URL of the API on it."""
    path = tmp_path / "feeds.db"
    store = FeedStore(db.engine(str(path)))
    feed_log = ThreatFeedLog(store, write_file=False)
    for n in range(ROWS):
        feed_log.info("a", f"row {n} of a")
        feed_log.warning("b", f"row {n} of b")
    with serving(create_api(store, feed_log, TOKEN)) as url:
        yield path, url
    store.close()


def cli_lines(path: Path, *args: str) -> list[str]:
    env = clean_env()
    done = subprocess.run(
        [FEEDGATE, "log", "--db", str(path), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def api_lines(url: str, **params: str) -> list[str]:
    answer = httpx.get(
        f"{url}/api/v1/log",
        params=params,
        headers={"Authorization": f"Bearer {TOKEN}"},
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    return [row["line"] for row in answer.json()]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "3", "order": "desc"},
        {"limit": "3", "order": "desc", "source": "a"},
        {"limit": "4"},
        {"limit": "4", "source": "b"},
        {"order": "desc"},
        {"limit": "0"},
        {},
    ],
    ids=repr,
)
def test_the_cli_and_the_api_list_the_same_rows(
    logged: tuple[Path, str], params: dict[str, str]
) -> None:
    """REST /log ignored limit and could not be asked for the newest rows."""
    path, url = logged
    args = [arg for key, value in params.items() for arg in (f"--{key}", value)]
    from_cli = cli_lines(path, *args)
    assert from_cli == api_lines(url, **params)
    expected = 2 * ROWS if "source" not in params else ROWS
    assert len(from_cli) == min(expected, int(params.get("limit", expected)))


def test_the_newest_rows_come_first_and_page_on_with_before(logged: tuple[Path, str]) -> None:
    _path, url = logged
    auth = {"Authorization": f"Bearer {TOKEN}"}
    newest = httpx.get(f"{url}/api/v1/log", params={"order": "desc", "limit": "2"}, headers=auth)
    first = newest.json()
    assert [r["message"] for r in first] == [f"row {ROWS - 1} of b", f"row {ROWS - 1} of a"]
    older = httpx.get(
        f"{url}/api/v1/log",
        params={"order": "desc", "limit": "2", "before": str(first[-1]["id"])},
        headers=auth,
    ).json()
    assert [r["message"] for r in older] == [f"row {ROWS - 2} of b", f"row {ROWS - 2} of a"]
    bad = httpx.get(f"{url}/api/v1/log", params={"order": "newest"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["field"] == "order"


def test_follow_with_desc_is_bad_usage(logged: tuple[Path, str]) -> None:
    path, _url = logged
    done = subprocess.run(
        [FEEDGATE, "log", "--db", str(path), "--follow", "--order", "desc"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--follow" in done.stderr

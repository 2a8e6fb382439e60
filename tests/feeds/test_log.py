"""feeds.log: a DB row and a gateway-style file line per event, secrets masked, one line each."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feedgate.db import engine
from feedgate.feeds.log import ThreatFeedLog, default_log_path, format_line, redact
from feedgate.feeds.store import FeedStore

LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (Info|Warning|Error): (.*)")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FeedStore]:
    s = FeedStore(engine(str(tmp_path / "feeds.db")))
    yield s
    s.close()


def test_rows_and_file_lines(store: FeedStore, tmp_path: Path) -> None:
    path = tmp_path / "logs" / "threat-feed.log"
    message = (
        "segment 2026-11-01T00:00Z–2026-11-02T00:00Z: 12 blocks, 480 observables read, "
        "470 new, 10 updated"
    )
    with ThreatFeedLog(store, path) as log:
        log.info("otx", message)
        log.warning("otx", "slow server")
        log.error(None, "scheduler stopped")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    first = LINE.fullmatch(lines[0])
    assert first is not None and first.groups() == ("Info", f'source "otx": {message}')
    assert lines[1].endswith(' Warning: source "otx": slow server')
    assert lines[2].endswith(" Error: scheduler stopped")
    rows = store.log_entries()
    assert [(r.level, r.source, r.message) for r in rows] == [
        ("info", "otx", message),
        ("warning", "otx", "slow server"),
        ("error", None, "scheduler stopped"),
    ]
    # The file line and the DB row carry the same time.
    assert lines[0].startswith(rows[0].at.strftime("%Y-%m-%dT%H:%M:%SZ"))


def test_format_line() -> None:
    at = datetime(2026, 11, 28, 3, 40, 12, 999, tzinfo=UTC)
    assert format_line(at, "info", "otx", "poll started") == (
        '2026-11-28T03:40:12Z Info: source "otx": poll started'
    )


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("login failed with password=hunter2x for me", "hunter2x"),
        ("Password: 'open sesame'", "open sesame"),
        ("key_password=abc123def", "abc123def"),
        ("api_key=0123456789abcdef", "0123456789abcdef"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("GET https://user:pa55word@otx.example/taxii failed", "pa55word"),
    ],
)
def test_secrets_are_masked(store: FeedStore, tmp_path: Path, text: str, secret: str) -> None:
    assert secret not in redact(text)
    path = tmp_path / "t.log"
    with ThreatFeedLog(store, path) as log:
        log.error("otx", text)
    assert secret not in path.read_text(encoding="utf-8")
    assert secret not in store.log_entries()[-1].message


def test_ordinary_text_is_kept() -> None:
    text = "segment 2026-11-01T00:00Z–2026-11-02T00:00Z: 3 blocks, passwords.example listed"
    assert redact(text) == text


def test_feed_text_cannot_forge_lines(store: FeedStore, tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    with ThreatFeedLog(store, path) as log:
        log.warning("otx", 'block skipped: title "x\n2026-01-01T00:00:00Z Info: fake\x1b[2J"')
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and "\\n" in lines[0] and "\x1b" not in lines[0]


def test_default_path_is_under_the_data_dir(
    store: FeedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_log_path() == tmp_path / "xdg" / "feedgate" / "threat-feed.log"
    with ThreatFeedLog(store) as log:
        log.info("otx", "hello")
    assert "hello" in default_log_path().read_text(encoding="utf-8")
    with ThreatFeedLog(store, write_file=False) as log:
        log.info("otx", "db only")
    assert "db only" not in default_log_path().read_text(encoding="utf-8")
    assert store.log_entries()[-1].message == "db only"


def test_rotation(store: FeedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import feedgate.feeds.log as module

    monkeypatch.setattr(module, "MAX_BYTES", 2000)
    path = tmp_path / "r.log"
    with ThreatFeedLog(store, path) as log:
        for n in range(100):
            log.info("otx", f"line {n} " + "x" * 50)
    assert path.exists() and (tmp_path / "r.log.1").exists()
    assert path.stat().st_size <= 2000

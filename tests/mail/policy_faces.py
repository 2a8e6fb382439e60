"""What the tests of the policy's faces share: ``feedgate`` run as a process on one database,
the stores opened on it, and a match log filled through the real evaluate and record."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from clean_env import clean_env
from feedgate import db as feedgate_db
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.model import Inspection, Match, Part
from feedgate.mail.policy import evaluate
from feedgate.mail.policy_store import PolicyStore


class Cli:
    """``python -m feedgate.cli`` on the database ``db`` (given by FEEDGATE_DB)."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "feeds.db"
        # The caller's FEEDGATE_ settings must not leak in, except the clock: under
        # `make test-future` the command must run on the test's (moved) clock, or "the last
        # 7 days" of the match log the test fills mean another week for the command.
        self.vars = clean_env()
        self.vars.update(FEEDGATE_DB=str(self.db), XDG_DATA_HOME=str(tmp_path / "data"))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "feedgate.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.vars,
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def jsonl(self, *args: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.ok(*args, "--format", "jsonl").splitlines()]

    def error(self, *args: str, status: int = 2) -> str:
        """The one error line of a command that must fail with ``status``."""
        result = self.run(*args)
        assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("feedgate: error: ") and "Traceback" not in result.stderr
        return lines[0].removeprefix("feedgate: error: ")

    def stores(self) -> tuple[FeedStore, PolicyStore]:
        feeds = FeedStore(feedgate_db.engine(str(self.db)))
        return feeds, PolicyStore(feeds.engine, feeds.source_names)


def add_sources(feeds: FeedStore, *names: str) -> None:
    for name in names:
        feeds.add_source(Source(name=name, hostname=f"{name}.example", collection="c"))


def fill_match_log(policy: PolicyStore, now: datetime) -> None:
    """Messages scanned over the last days, recorded as the gateway records them: otx's
    evil.example in three messages (one of them ten days ago), partner's 198.51.100.7 in one."""
    loaded = policy.load()
    evil_from = Match(Part.FROM, "domain", "evil.example", "evil.example", "otx", 1)
    evil_url = Match(Part.URL, "domain", "evil.example", "evil.example", "otx", 1)
    bad_url = Match(Part.URL, "url", "https://bad.example/x", "https://bad.example/x", "otx", 3)
    ip = Match(Part.CLIENT_IP, "ipv4", "198.51.100.7", "198.51.100.7", "partner", 2)
    for at, message_id, matches in (
        (now - timedelta(days=10), "<old@example.net>", (evil_from,)),
        (now - timedelta(hours=5), "<a@example.net>", (evil_from, evil_url, ip)),
        (now - timedelta(hours=1), "<b@example.net>", (evil_url, bad_url)),
    ):
        verdict = evaluate(matches, Inspection((), message_id=message_id), loaded)
        assert policy.record(verdict, message_id, at) > 0

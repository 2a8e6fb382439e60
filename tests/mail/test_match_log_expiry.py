"""The match log's retention (``PolicyStore.expire_matches``, run hourly by ``feedgate serve`` /
``up`` with ``--match-log-days``): rows older than the retention go, newer ones stay, counted on
an injected clock, on SQLite and a real PostgreSQL; the deletes come in batches, one transaction
each, so a first prune of a big log never holds the write lock for long."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from feedgate.db import engine
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.model import Inspection, Match, Part
from feedgate.mail.policy import evaluate
from feedgate.mail.policy_store import DEFAULT_MATCH_LOG_RETENTION, PolicyStore
from feedgate.mail.rules import PolicyError
from pgserver import Database

NOW = datetime.now(UTC).replace(microsecond=0)


def open_stores(url: str) -> tuple[FeedStore, PolicyStore]:
    feeds = FeedStore(engine(url))
    feeds.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    return feeds, PolicyStore(feeds.engine, feeds.source_names)


def log_at(store: PolicyStore, moments: list[datetime]) -> None:
    """One match log row per moment (a distinct observable each, so none merge)."""
    policy = store.load()
    for i, moment in enumerate(moments):
        hit = Match(Part.URL, "domain", f"bad{i}.example", f"bad{i}.example", "otx", i + 1)
        verdict = evaluate([hit], Inspection(()), policy)
        assert store.record(verdict, f"<m{i}@x>", moment) == 1


def logged(store: PolicyStore) -> list[datetime]:
    from feedgate.mail.schema import match_log

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(match_log.c.at).order_by(match_log.c.at)).scalars()
        return [r.replace(tzinfo=UTC) for r in rows]


def test_rows_past_the_retention_go_and_the_rest_stay(any_db: Database) -> None:
    feeds, store = open_stores(any_db.url)
    edge = NOW - DEFAULT_MATCH_LOG_RETENTION
    moments = [
        NOW - timedelta(days=30),
        edge - timedelta(seconds=1),
        edge,  # exactly 14 days old: kept
        NOW - timedelta(days=1),
        NOW,
    ]
    log_at(store, moments)
    assert store.expire_matches(NOW) == 2
    assert logged(store) == moments[2:]
    assert store.expire_matches(NOW) == 0  # nothing more to do
    assert store.expire_matches(NOW + timedelta(days=1), timedelta(days=1)) == 2
    assert logged(store) == [NOW]
    assert sum(s.hits for s in store.hits().sources) == 1  # feedgate hits counts what is left
    feeds.close()


def test_a_big_prune_deletes_in_batches_one_transaction_each(tmp_path: Path) -> None:
    feeds, store = open_stores(str(tmp_path / "f.db"))
    old = [NOW - timedelta(days=20, minutes=i) for i in range(11)]
    log_at(store, [*old, NOW])
    commits: list[int] = []
    sa.event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    assert store.expire_matches(NOW, batch=3) == 11
    assert len(commits) == 4  # 3 + 3 + 3 + 2: the short batch ends it
    assert logged(store) == [NOW]
    feeds.close()


def test_bad_retention_or_batch_is_refused(tmp_path: Path) -> None:
    feeds, store = open_stores(str(tmp_path / "f.db"))
    with pytest.raises(PolicyError, match="more than 0 days"):
        store.expire_matches(NOW, timedelta(0))
    with pytest.raises(PolicyError, match="give 1 or more"):
        store.expire_matches(NOW, batch=0)
    feeds.close()


def test_serves_expiry_prunes_the_match_log_on_its_clock(tmp_path: Path) -> None:
    """The hourly thread of ``feedgate serve``/``up``: one round (stop already set) prunes
    the match log with --match-log-days, on the clock it is given."""
    from feedgate.cli.serve import _expire_quarantine

    feeds, store = open_stores(str(tmp_path / "f.db"))
    log_at(store, [NOW - timedelta(days=4), NOW - timedelta(days=2)])
    stop = threading.Event()
    stop.set()
    _expire_quarantine(feeds, 14, stop, match_log_days=3, now=lambda: NOW)
    assert logged(store) == [NOW - timedelta(days=2)]
    _expire_quarantine(feeds, 14, stop, match_log_days=3, now=lambda: NOW + timedelta(days=2))
    assert logged(store) == []
    feeds.close()


@pytest.mark.parametrize("command", ["serve", "up"])
def test_match_log_days_option(command: str) -> None:
    from feedgate.cli import main

    runner = CliRunner()
    shown = runner.invoke(main, [command, "--help"])
    assert shown.exit_code == 0 and "--match-log-days" in shown.output
    bad = runner.invoke(main, [command, "--match-log-days", "0"])
    assert bad.exit_code == 2 and "--match-log-days" in bad.output

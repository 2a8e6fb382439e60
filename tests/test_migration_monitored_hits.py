"""feeds_0010: the match log's ``mode``, on SQLite and PostgreSQL. Rows written before it are
told apart by their action (``monitor``, ``retro-monitor``: monitor mode's), ``feedgate hits``
counts them apart at once, and the way back marks monitored rows by their action again, as the
code before it knew them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from feedgate import migrate
from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.model import Inspection, Match, Part
from feedgate.mail.policy import evaluate
from feedgate.mail.policy_store import PolicyStore
from pgserver import Database


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def eng(any_db: Database) -> Iterator[sa.Engine]:
    e = engine(any_db.url)
    yield e
    e.dispose()


def _to(eng: sa.Engine, revision: str, down: bool = False) -> None:
    from alembic import command

    with migrate._locked(eng, "feeds") as conn:
        (command.downgrade if down else command.upgrade)(migrate.config("feeds", conn), revision)


def _rows(eng: sa.Engine) -> list[tuple[str, str, str]]:
    with eng.connect() as conn:
        query = sa.text("SELECT value, action, mode FROM mail_match_log ORDER BY id")
        return [(v, a, m) for v, a, m in conn.execute(query)]


def test_upgrade_marks_the_old_monitor_rows_and_back(eng: sa.Engine) -> None:
    _to(eng, "feeds_0009")
    at = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
    old = [  # as the code before feeds_0010 wrote them
        ("enforced.example", "quarantine", "threat-feeds"),
        ("watched.example", "monitor", "threat-feeds"),
        ("found.example", "retro", "threat-feeds"),
        ("found-watched.example", "retro-monitor", None),
    ]
    with eng.begin() as conn:
        for number, (value, action, rule) in enumerate(old, start=1):
            conn.execute(
                sa.text(
                    "INSERT INTO mail_match_log (at, message_id, parts, rule, action,"
                    " observable_id, kind, value, source)"
                    " VALUES (:at, :mid, 'url', :rule, :action, :oid, 'domain', :value, 'otx')"
                ).bindparams(sa.bindparam("at", type_=sa.DateTime)),
                {"at": at, "mid": f"<m{number}@x.test>", "rule": rule, "action": action,
                 "oid": number, "value": value},
            )  # fmt: skip

    feeds = FeedStore(eng)  # opens at head: upgraded
    assert migrate.current(eng, "feeds") == migrate.HEADS["feeds"]
    assert migrate.differences(eng, "feeds") == []
    assert _rows(eng) == [
        ("enforced.example", "quarantine", "enforce"),
        ("watched.example", "monitor", "monitor"),
        ("found.example", "retro", "enforce"),
        ("found-watched.example", "retro-monitor", "monitor"),
    ]
    feeds.add_source(Source(name="otx", hostname="otx.example", collection="c", mode="monitor"))
    policy = PolicyStore(eng, feeds.source_names)
    counted = policy.hits(since=None)
    assert sorted((s.source, s.mode, s.hits, s.messages) for s in counted.sources) == [
        ("otx", "enforce", 2, 2),
        ("otx", "monitor", 2, 2),
    ]

    # A row written now: the action is what the rule would have done, the mode says monitor.
    match = Match(Part.URL, "domain", "new.example", "new.example", "otx", 9)
    verdict = evaluate([match], Inspection((), message_id="<new@x.test>"), policy.load(),
                       modes=feeds.source_modes())  # fmt: skip
    assert policy.record(verdict, "<new@x.test>", datetime.now(UTC)) == 1
    assert _rows(eng)[-1] == ("new.example", "quarantine", "monitor")
    feeds.close()

    _to(eng, "feeds_0009", down=True)
    with eng.connect() as conn:
        back = conn.execute(sa.text("SELECT value, action FROM mail_match_log ORDER BY id"))
        assert [(v, a) for v, a in back] == [
            ("enforced.example", "quarantine"),
            ("watched.example", "monitor"),
            ("found.example", "retro"),
            ("found-watched.example", "retro-monitor"),
            ("new.example", "monitor"),  # the old code's only sign of a monitored row
        ]
        columns = {c["name"] for c in sa.inspect(conn).get_columns("mail_match_log")}
    assert "mode" not in columns

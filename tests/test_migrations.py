"""Schema migrations (feedgate.migrate, feedgate/migrations): a fresh upgrade makes exactly the
tables the code defines (Alembic's compare_metadata finds nothing) on SQLite and PostgreSQL, for
both schemas and for both in one database; a database made by the old ``create_all`` is adopted
with its data; reopening changes nothing and takes no lock; a newer database is refused naming
both revisions; several processes opening one new database at once all succeed; SQLite's batch
mode copies a referenced table without cascading deletes; and ``feedgate db upgrade|current``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from feedgate import migrate
from feedgate.cli import main
from feedgate.db import engine, write_transaction
from feedgate.feeds import secrets
from feedgate.feeds.scheduler import Scheduler
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.hub.store import HubStore
from feedgate.migrate import INITIAL, VERSION_TABLES, MigrationError, Schema
from feedgate.observables import Kind, Observable, observable_digest
from pgserver import Database

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


@pytest.fixture
def eng(any_db: Database) -> Iterator[sa.Engine]:
    e = engine(any_db.url)
    yield e
    e.dispose()


def tables(e: sa.Engine) -> set[str]:
    return set(sa.inspect(e).get_table_names())


def version_row(e: sa.Engine, which: Schema) -> list[str]:
    with e.connect() as conn, conn.begin():
        return [
            r[0] for r in conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLES[which]}"))
        ]


# --- a fresh database ---------------------------------------------------------------------


@pytest.mark.parametrize("which", migrate.SCHEMAS)
def test_fresh_upgrade_makes_exactly_the_metadata(eng: sa.Engine, which: Schema) -> None:
    result = migrate.upgrade(eng, which)
    assert (result.before, result.after, result.adopted) == (None, migrate.head(which), False)
    assert migrate.differences(eng, which) == []
    assert tables(eng) == {*migrate.target_metadata(which).tables, VERSION_TABLES[which]}
    assert version_row(eng, which) == [migrate.head(which)]


def test_fresh_upgrade_writes_the_counter_rows(eng: sa.Engine) -> None:
    """Written by the migration under its lock, so concurrent first opens never race on them."""
    for which in migrate.SCHEMAS:
        migrate.upgrade(eng, which)
    with eng.connect() as conn, conn.begin():
        feeds = dict(conn.execute(sa.text("SELECT name, value FROM feed_counters")).all())
        hub = dict(conn.execute(sa.text("SELECT name, value FROM counters")).all())
        setting = conn.execute(sa.text("SELECT value FROM settings")).scalar_one()
    assert feeds == {"version": 0, "schema_version": 1, "policy_version": 0}
    assert hub == {"seq": 0, "label": 0, "indicator_id": 0}
    assert setting == "1"


def test_both_schemas_share_one_database(eng: sa.Engine) -> None:
    """Separate version tables: each schema's history and comparison ignore the other's."""
    for which in migrate.SCHEMAS:
        migrate.upgrade(eng, which)
    for which in migrate.SCHEMAS:
        assert migrate.current(eng, which) == migrate.head(which)
        assert migrate.differences(eng, which) == []


def test_stores_open_a_fresh_database_through_the_migrations(eng: sa.Engine) -> None:
    store = FeedStore(eng)
    Scheduler(store, feed_log=None)  # type: ignore[arg-type]  # only its constructor here
    HubStore(eng)
    assert migrate.current(eng, "feeds") == migrate.head("feeds")
    assert migrate.current(eng, "hub") == migrate.head("hub")
    assert "leases" in tables(eng)  # the scheduler's table comes from the feeds migration
    assert store.version() == 0


def test_current_reads_only(eng: sa.Engine) -> None:
    assert migrate.current(eng, "feeds") is None
    assert tables(eng) == set()


# --- reopening ------------------------------------------------------------------------------


def test_reopen_is_a_no_op(eng: sa.Engine) -> None:
    store = FeedStore(eng)
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    again = migrate.upgrade(eng, "feeds")
    assert (again.before, again.after, again.changed) == (migrate.head("feeds"),) * 2 + (False,)
    assert [s.name for s in FeedStore(eng).list_sources()] == ["otx"]
    assert version_row(eng, "feeds") == [migrate.head("feeds")]


def test_reopen_takes_no_lock_while_another_process_writes(tmp_path: Path) -> None:
    """A database at head is recognised by a read: opening it never waits for a writer."""
    path = str(tmp_path / "f.db")
    FeedStore(engine(path)).close()
    writer = engine(path)
    other = engine(path)
    with write_transaction(writer) as conn:  # BEGIN IMMEDIATE held
        conn.execute(
            sa.text("INSERT INTO feed_log (at, level, message) VALUES ('2026-01-01', 'info', 'x')")
        )
        started = time.monotonic()
        assert not migrate.upgrade(other, "feeds").changed
        assert time.monotonic() - started < 5
    writer.dispose()
    other.dispose()


def test_sqlite_foreign_keys_are_on_again_after_an_upgrade() -> None:
    e = engine("sqlite://")  # one shared connection: what the upgrade did to it, we see
    migrate.upgrade(e, "feeds")
    with e.connect() as conn, conn.begin():
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# --- adoption of a create_all database ---------------------------------------------------


def _old_open(monkeypatch: pytest.MonkeyPatch, with_leases: bool) -> None:
    """Make the stores open as the code before migrations did: ``create_all``, no version
    table (Scheduler's leases only when it ran): today's metadata less what later revisions
    added (feeds_0002: shared context layers; feeds_0003: secret user names, timeouts;
    feeds_0004: the mail policy's tables, the sources' false-positive gate; feeds_0005:
    observables' changed_version; feeds_0007: the mail index, the retro findings, the sources'
    mode; feeds_0006's quarantine, with feeds_0008's release claims on it, is left out whole;
    feeds_0011: the console's users, sessions and login throttle; feeds_0012: the held
    counts' history)."""

    def create_all(e: sa.Engine, which: Schema) -> None:
        md = migrate.target_metadata(which)
        if which == "feeds" and not with_leases:
            md.remove(md.tables["leases"])
        if which == "feeds":
            for name in (
                "mail_rules",
                "mail_exceptions",
                "mail_match_log",
                "mail_index_keys",
                "mail_index_messages",
                "mail_retro",
                "mail_quarantine",
                "console_users",
                "console_sessions",
                "console_login_failures",
                "feed_held_counts",
            ):
                md.remove(md.tables[name])
        md.create_all(e)
        if which == "feeds":
            with e.begin() as conn:
                conn.exec_driver_sql("DROP TABLE shared_contexts")
                conn.exec_driver_sql("DROP INDEX ix_observables_changed")
                conn.exec_driver_sql("ALTER TABLE observables DROP COLUMN changed_version")
                conn.exec_driver_sql("ALTER TABLE observables DROP COLUMN shared_digest")
                for column in (
                    "username_enc",
                    "username_secret",
                    "timeout_us",
                    "fp_gate",
                    "mode",
                ):
                    conn.exec_driver_sql(f"ALTER TABLE feed_sources DROP COLUMN {column}")

    monkeypatch.setattr(migrate, "upgrade", create_all)


@pytest.mark.parametrize("with_leases", [True, False], ids=["served", "never-served"])
def test_create_all_feeds_database_is_adopted_with_its_data(
    eng: sa.Engine, monkeypatch: pytest.MonkeyPatch, with_leases: bool
) -> None:
    with monkeypatch.context() as patch:
        _old_open(patch, with_leases)
        old = FeedStore(eng)
        row = _source_row_0002("otx", "otx.example", None, "pw")  # as the old code wrote it
        with eng.begin() as conn:
            conn.execute(sa.table("feed_sources", *(sa.column(k) for k in row)).insert(), [row])
        with eng.begin() as conn:  # as the code before feeds_0002 wrote it: the whole context
            insert = sa.text(
                "INSERT INTO observables (source_id, digest, kind, value, first_seen, last_seen,"
                " expired, context) SELECT id, :digest, 'ipv4', '198.51.100.7', :seen, :seen,"
                " :expired, :context FROM feed_sources"
            ).bindparams(
                sa.bindparam("digest", type_=sa.LargeBinary),
                sa.bindparam("seen", type_=sa.DateTime),
                sa.bindparam("expired", type_=sa.Boolean),
            )
            conn.execute(
                insert,
                {
                    "digest": observable_digest("ipv4", "198.51.100.7"),
                    "seen": T0.replace(tzinfo=None),
                    "expired": False,
                    "context": '{"package_title": "pulse"}',
                },
            )
        old.add_log("otx", "info", "polled")
    assert VERSION_TABLES["feeds"] not in tables(eng)
    assert ("leases" in tables(eng)) is with_leases

    store = FeedStore(eng)
    assert migrate.current(eng, "feeds") == migrate.head("feeds")
    assert migrate.differences(eng, "feeds") == []
    assert store.get_source("otx") is not None
    assert store.get_source("otx").password == "pw"  # type: ignore[union-attr]
    assert [(o.value, o.context) for o in store.observables()] == [
        ("198.51.100.7", {"package_title": "pulse"})
    ]
    assert [e.message for e in store.log_entries()] == ["polled"]


def test_create_all_hub_database_is_adopted_with_its_data(
    eng: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        _old_open(patch, with_leases=True)
        HubStore(eng).create_user("alice")
    hub = HubStore(eng)
    result = migrate.current(eng, "hub")
    assert result == migrate.head("hub")
    assert migrate.differences(eng, "hub") == []
    assert hub.get_user("alice") is not None


def test_adoption_stamps_the_initial_revision(
    eng: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        _old_open(patch, with_leases=True)
        FeedStore(eng)
    result = migrate.upgrade(eng, "feeds")
    assert result.adopted and result.before is None and result.after == migrate.head("feeds")
    assert migrate.upgrade(eng, "feeds").changed is False
    assert INITIAL["feeds"] == "feeds_0001"


def test_incomplete_set_of_tables_is_not_adopted(eng: sa.Engine) -> None:
    md = migrate.target_metadata("hub")
    md.tables["users"].create(eng)
    md.tables["settings"].create(eng)
    with pytest.raises(MigrationError) as info:
        HubStore(eng)
    message = str(info.value)
    assert "settings, users" in message and "api_keys" in message and "pulses" in message
    assert VERSION_TABLES["hub"] not in tables(eng)  # nothing was done


# --- a database newer than the code --------------------------------------------------------


@pytest.mark.parametrize("which", migrate.SCHEMAS)
def test_newer_database_is_refused_naming_both_revisions(eng: sa.Engine, which: Schema) -> None:
    migrate.upgrade(eng, which)
    with eng.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLES[which]} SET version_num = '{which}_9999'"))
    opener = FeedStore if which == "feeds" else HubStore
    for attempt in (lambda: opener(eng), lambda: migrate.current(eng, which)):
        with pytest.raises(MigrationError) as info:
            attempt()
        assert f"{which}_9999" in str(info.value)
        assert migrate.head(which) in str(info.value)
    assert version_row(eng, which) == [f"{which}_9999"]  # left as it was


# --- concurrency ----------------------------------------------------------------------------

_OPENER = textwrap.dedent(
    """
    import sys, time
    from feedgate.db import engine
    from feedgate.feeds.store import FeedStore
    from feedgate.hub.store import HubStore
    url, start = sys.argv[1], float(sys.argv[2])
    e = engine(url)
    time.sleep(max(0.0, start - time.time()))  # all processes open at the same moment
    FeedStore(e)
    HubStore(e)
    print("ok")
    """
)


def test_processes_opening_one_new_database_at_once(any_db: Database) -> None:
    start = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, any_db.url, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, secrets.KEY_ENV: secrets.generate_key()},
        )
        for _ in range(6)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    e = engine(any_db.url)
    for which in migrate.SCHEMAS:
        assert version_row(e, which) == [migrate.head(which)]
        assert migrate.differences(e, which) == []
    e.dispose()


def test_threads_opening_one_new_database_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def open_() -> None:
        try:
            e = engine(path)
            barrier.wait()
            FeedStore(e).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- SQLite batch mode: what later ALTERs will do ----------------------------------------


def test_sqlite_batch_copy_of_a_referenced_table_keeps_referencing_rows(tmp_path: Path) -> None:
    """Batch mode copies feed_sources and drops the old one: under the migration lock foreign
    keys are off, so that DROP does not cascade into observables."""
    e = engine(str(tmp_path / "b.db"))
    store = FeedStore(e)
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    with store.segment("otx") as seg:
        seg.upsert([Observable(Kind.DOMAIN, "example.org", None, {})], T0)
    with migrate._locked(e, "feeds") as conn:
        ctx = MigrationContext.configure(conn, opts={"render_as_batch": True})
        with Operations(ctx).batch_alter_table("feed_sources", recreate="always") as batch:
            batch.add_column(sa.Column("note", sa.Text, nullable=True))
    assert "note" in {c["name"] for c in sa.inspect(e).get_columns("feed_sources")}
    assert [o.value for o in FeedStore(e).observables()] == ["example.org"]
    e.dispose()


# --- the CLI ----------------------------------------------------------------------------------


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_upgrade_and_current(tmp_path: Path) -> None:
    db = str(tmp_path / "f.db")
    code, out, err = run("db", "current", "--db", db)
    assert code == 1 and err.startswith(f"feedgate: error: database {db}: no such database")
    elsewhere = tmp_path / "no" / "f.db"  # `current` only reads: it makes no folder either
    assert ": no such database" in run("db", "current", "--db", str(elsewhere))[2]
    assert not elsewhere.parent.exists()

    code, out, _ = run("db", "upgrade", "--db", db)
    assert code == 0
    head = migrate.HEADS["feeds"]
    assert out == f"feeds schema of {db}: upgraded from nothing to {head} (head)\n"
    assert run("db", "upgrade", "--db", db)[1] == (
        f"feeds schema of {db}: already at {head} (head)\n"
    )
    assert run("db", "current", "--db", db)[1] == f"{head} (head)\n"

    # --hub: the hub's schema, in the same file here; the feeds schema is not it.
    assert run("db", "current", "--hub", "--db", db)[1].startswith("none (no hub schema")
    assert run("db", "upgrade", "--hub", "--db", db)[1].endswith("to hub_0001 (head)\n")
    assert run("db", "current", "--hub", "--db", db)[1] == "hub_0001 (head)\n"


def test_cli_default_databases_come_from_the_environment(tmp_path: Path) -> None:
    env = {"FEEDGATE_DB": str(tmp_path / "m.db"), "FEEDGATE_HUB_DB": str(tmp_path / "h.db")}
    assert run("db", "upgrade", env=env)[0] == 0
    assert run("db", "upgrade", "--hub", env=env)[0] == 0
    assert migrate.current(engine(env["FEEDGATE_DB"]), "feeds") == migrate.head("feeds")
    assert migrate.current(engine(env["FEEDGATE_DB"]), "hub") is None
    assert migrate.current(engine(env["FEEDGATE_HUB_DB"]), "hub") == "hub_0001"


def test_cli_adopts_and_refuses_newer_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "old.db")
    with monkeypatch.context() as patch:
        _old_open(patch, with_leases=False)
        FeedStore(engine(db)).close()
    code, out, _ = run("db", "upgrade", "--db", db)
    assert (code, out) == (
        0,
        f"feeds schema of {db}: adopted (tables made before migrations), now at"
        f" {migrate.HEADS['feeds']} (head)\n",
    )
    with engine(db).begin() as conn:
        conn.execute(sa.text("UPDATE feedgate_feeds_version SET version_num = 'feeds_0042'"))
    for command in ("upgrade", "current"):
        code, out, err = run("db", command, "--db", db)
        assert code == 1 and out == ""
        assert err.count("\n") == 1
        assert err.startswith(f"feedgate: error: database {db}: the feeds schema is at revision")
        assert "feeds_0042" in err and migrate.head("feeds") in err
    # Commands that open the store say the same in one line.
    code, _, err = run("source", "list", "--db", db)
    assert code == 1 and "feeds_0042" in err and err.count("\n") == 1


def test_cli_bad_database_name_is_one_line() -> None:
    code, _, err = run("db", "upgrade", "--db", "mysql://u:secret@h/x")
    assert code == 1 and "secret" not in err and err.startswith("feedgate: error: database")


def test_downgrading_shared_layers_puts_each_whole_context_back(eng: sa.Engine) -> None:
    from alembic import command

    from feedgate.observables import LayeredContext

    store = FeedStore(eng)
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    pulse = {"package_id": "p-1", "package_title": "caf\u00e9 pulse", "tlp": "white"}
    observables = [
        Observable(Kind.IPV4, "198.51.100.7", None, LayeredContext(pulse, {"indicator_id": "i"})),
        Observable(Kind.IPV4, "198.51.100.8", None, LayeredContext(pulse, {"tlp": "amber"})),
        Observable(Kind.IPV4, "198.51.100.9", None, {"odd": "bad \ud800 text"}),  # no layer
    ]
    with store.segment("otx") as seg:
        seg.upsert(observables, T0)
    store.close()
    with eng.begin() as conn:
        command.downgrade(migrate.config("feeds", conn), "feeds_0001")
    assert "shared_contexts" not in tables(eng)
    with eng.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT value, context FROM observables")).all())
    for obs in observables:
        whole = json.loads(stored[obs.value])
        assert whole == dict(obs.context) and list(whole) == list(obs.context)
    assert "caf\u00e9 pulse" in stored["198.51.100.7"]  # text kept as text
    # and up again: the rows read the same (whole contexts in the row, no layer)
    again = {o.value: o.context for o in FeedStore(eng).observables(limit=10)}
    assert again == {o.value: dict(o.context) for o in observables}


# --- feeds_0003: secret user names, timeouts -------------------------------------------------

_KEY = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


def _source_row_0002(
    name: str, hostname: str, username: str | None, password: str | None
) -> dict[str, Any]:
    """A feed_sources row as feeds_0002's code wrote it: the user name in clear."""
    return {
        "name": name, "description": "", "enabled": True, "hostname": hostname, "port": 443,
        "use_https": True, "poll_path": "/taxii/poll", "collection": "c", "taxii_version": "1.1",
        "username": username,
        "password_enc": None if password is None else secrets.encrypt(password),
        "verify_ssl": True, "polling_interval_us": 3600 * 10**6, "age_us": 30 * 86400 * 10**6,
        "poll_segment_us": 86400 * 10**6, "max_retries": 3, "enforce": '["ipv4"]',
    }  # fmt: skip


def test_upgrade_from_0002_encrypts_plain_user_names_that_are_keys(eng: sa.Engine) -> None:
    from alembic import command

    with migrate._locked(eng, "feeds") as conn:
        command.upgrade(migrate.config("feeds", conn), "feeds_0002")
    rows = [
        _source_row_0002("otx", "otx.alienvault.com", _KEY, "a-real-looking-Pa55word"),
        _source_row_0002("hub", "hub.example", _KEY[::-1], "x"),
        _source_row_0002("nopass", "hub.example", _KEY.upper(), None),
        _source_row_0002("login", "hub.example", "alice", "s3cret-Pa55word"),
        _source_row_0002("anon", "hub.example", None, None),
    ]
    table = sa.table("feed_sources", *(sa.column(k) for k in rows[0]))
    with eng.begin() as conn:
        conn.execute(table.insert(), rows)
        conn.execute(
            sa.text("INSERT INTO feed_log (at, level, source, message) VALUES (:at, 'info', 'otx',"
                    " 'polled')").bindparams(sa.bindparam("at", type_=sa.DateTime)),
            {"at": T0.replace(tzinfo=None)},
        )  # fmt: skip

    store = FeedStore(eng)
    assert migrate.current(eng, "feeds") == migrate.head("feeds") == migrate.HEADS["feeds"]
    assert migrate.differences(eng, "feeds") == []
    with eng.connect() as conn:
        raw = {
            r.name: r
            for r in conn.execute(
                sa.text(
                    "SELECT name, username, username_enc, username_secret, timeout_us"
                    " FROM feed_sources"
                )
            )
        }
    for name, key in (("otx", _KEY), ("hub", _KEY[::-1]), ("nopass", _KEY.upper())):
        assert raw[name].username is None and bool(raw[name].username_secret)
        assert secrets.decrypt(raw[name].username_enc) == key
        source = store.get_source(name)
        assert source is not None and source.username == key and source.username_secret
    assert (raw["login"].username, raw["login"].username_enc) == ("alice", None)
    assert store.get_source("login").username_secret is False  # type: ignore[union-attr]
    assert store.get_source("otx").password == "a-real-looking-Pa55word"  # type: ignore[union-attr]
    assert {r.timeout_us for r in raw.values()} == {60 * 10**6}
    assert [e.message for e in store.log_entries()] == ["polled"]
    store.close()

    with migrate._locked(eng, "feeds") as conn:  # and back: the names in clear again
        command.downgrade(migrate.config("feeds", conn), "feeds_0002")
    with eng.connect() as conn:
        back = dict(conn.execute(sa.text("SELECT name, username FROM feed_sources")).all())
    assert back == {r["name"]: r["username"] for r in rows}


def test_upgrade_without_the_secret_key_changes_nothing(
    eng: sa.Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A key that cannot be had stops the upgrade in one clear error; the user names stay."""
    from alembic import command

    with migrate._locked(eng, "feeds") as conn:
        command.upgrade(migrate.config("feeds", conn), "feeds_0002")
    row = _source_row_0002("otx", "otx.alienvault.com", _KEY, None)
    with eng.begin() as conn:
        conn.execute(sa.table("feed_sources", *(sa.column(k) for k in row)).insert(), [row])
    key_file = tmp_path / "open.key"
    key_file.write_text(secrets.generate_key())
    key_file.chmod(0o644)
    monkeypatch.delenv(secrets.KEY_ENV)
    monkeypatch.setenv(secrets.KEY_FILE_ENV, str(key_file))
    with pytest.raises(MigrationError) as info:
        FeedStore(eng)
    assert "user name" in str(info.value) and "chmod 600" in str(info.value)
    assert _KEY not in str(info.value)
    assert migrate.current(eng, "feeds") == "feeds_0002"
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT username FROM feed_sources")).scalar() == _KEY


# --- feeds_0008: release claims on quarantined messages ----------------------------------------


def test_upgrade_from_0007_keeps_held_messages_unclaimed_and_back(eng: sa.Engine) -> None:
    """A message held before the claims came is releasable at once (no claim), on both
    backends; the way back drops only the claim columns."""
    from alembic import command

    from feedgate.mail.quarantine import QuarantineStore, ReleaseRefused

    with migrate._locked(eng, "feeds") as conn:
        command.upgrade(migrate.config("feeds", conn), "feeds_0007")
    row = {
        "id": "00aa11bb22cc33dd", "at": T0.replace(tzinfo=None), "size": 4, "rules": '["r"]',
        "matches": "[]", "sources": ",otx,", "relay": "127.0.0.1:25", "raw": b"x\r\n\r\n",
        "envelope": json.dumps({"mail_from": "a@x.test", "rcpt_tos": ["b@y.test"]}),
    }  # fmt: skip
    columns = [sa.column(k, sa.LargeBinary if k == "raw" else None) for k in row]
    with eng.begin() as conn:
        conn.execute(sa.table("mail_quarantine", *columns).insert(), [row])

    store = QuarantineStore(eng)
    assert migrate.current(eng, "feeds") == migrate.HEADS["feeds"]
    assert migrate.differences(eng, "feeds") == []
    held = store.get(row["id"])
    assert (held.claimed_by, held.claimed_at, held.claim_until) == (None, None, None)
    with pytest.raises(ReleaseRefused, match="unreachable"):  # claimed, tried, claim freed
        store.release(row["id"], by="admin", relay="127.0.0.1:1")
    after = store.get(row["id"])
    assert after.release_error is not None and after.claimed_by is None

    with migrate._locked(eng, "feeds") as conn:
        command.downgrade(migrate.config("feeds", conn), "feeds_0007")
    columns_left = {c["name"] for c in sa.inspect(eng).get_columns("mail_quarantine")}
    assert not columns_left & {"claim_token", "claimed_by", "claimed_at", "claim_until"}
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM mail_quarantine")).scalar() == row["id"]


# --- feeds_0009: the relay TLS recorded with a quarantined message ------------------------------


def test_upgrade_from_0008_releases_held_messages_at_may_and_back(eng: sa.Engine) -> None:
    """A message held before the TLS was recorded is released at ``may`` (as it was before:
    plain text to a relay without STARTTLS, here a real aiosmtpd sink), on both backends; a new
    one records the level given; the way back drops only the two columns."""
    from alembic import command

    from feedgate.mail.model import Action, Envelope
    from feedgate.mail.policy import Verdict
    from feedgate.mail.quarantine import QuarantineStore
    from feedgate.mail.relay import relay_tls
    from postfix import Sink  # an aiosmtpd server that keeps what it is sent

    sink = Sink()
    sink.start()
    with migrate._locked(eng, "feeds") as conn:
        command.upgrade(migrate.config("feeds", conn), "feeds_0008")
    row = {
        "id": "00aa11bb22cc33ee", "at": T0.replace(tzinfo=None), "size": 4, "rules": '["r"]',
        "matches": "[]", "sources": ",otx,", "relay": f"127.0.0.1:{sink.port}",
        "raw": b"x\r\n\r\n",
        "envelope": json.dumps({"mail_from": "a@x.test", "rcpt_tos": ["b@y.test"]}),
    }  # fmt: skip
    columns = [sa.column(k, sa.LargeBinary if k == "raw" else None) for k in row]
    with eng.begin() as conn:
        conn.execute(sa.table("mail_quarantine", *columns).insert(), [row])
    try:
        store = QuarantineStore(eng)
        assert migrate.current(eng, "feeds") == migrate.HEADS["feeds"]
        assert migrate.differences(eng, "feeds") == []
        held = store.get(row["id"])
        assert (held.relay_tls, held.relay_ca_file) == ("may", None)
        assert held.to_dict()["relay_tls"] == "may"
        assert store.release(row["id"], by="admin").released_by == "admin"
        [got] = sink.wait_count(1)
        assert got.content == row["raw"] and got.rcpt_tos == ("b@y.test",)
    finally:
        sink.stop()
    verdict = Verdict(None, Action.QUARANTINE, rules=("r",))
    newer = store.add(b"y\r\n\r\n", Envelope("a@x.test", ("b@y.test",)), verdict,
                      tls=relay_tls("encrypt"))  # fmt: skip
    assert store.get(newer).relay_tls == "encrypt"

    with migrate._locked(eng, "feeds") as conn:
        command.downgrade(migrate.config("feeds", conn), "feeds_0008")
    columns_left = {c["name"] for c in sa.inspect(eng).get_columns("mail_quarantine")}
    assert not columns_left & {"relay_tls", "relay_ca_file"} and "claim_token" in columns_left
    with eng.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.text("SELECT id FROM mail_quarantine"))}
    assert ids == {row["id"], newer}


# --- feeds_0011: the console's users, sessions and login throttle ------------------------------


def test_upgrade_from_0010_adds_the_console_tables_and_back(eng: sa.Engine) -> None:
    """New tables only: a database at feeds_0010 gets them empty (its rows stay), a user
    added there logs in, and the way back drops exactly them."""
    from alembic import command

    from feedgate.feeds.console_users import ConsoleUsers

    console = {"console_users", "console_sessions", "console_login_failures"}
    with migrate._locked(eng, "feeds") as conn:
        command.upgrade(migrate.config("feeds", conn), "feeds_0010")
    assert not tables(eng) & console
    with eng.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO feed_log (at, level, message) VALUES (:at, 'info', 'kept')"),
            {"at": T0.replace(tzinfo=None)},
        )

    users = ConsoleUsers(eng, now=lambda: T0)
    assert migrate.current(eng, "feeds") == migrate.HEADS["feeds"]
    assert migrate.differences(eng, "feeds") == []
    assert console <= tables(eng)
    users.add("admin", "a long enough password")
    assert users.login("admin", "a long enough password", "192.0.2.1").session.user == "admin"

    with migrate._locked(eng, "feeds") as conn:
        command.downgrade(migrate.config("feeds", conn), "feeds_0010")
    assert not tables(eng) & console
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT message FROM feed_log")).scalar() == "kept"


# --- feeds_0012: the history of what each source holds ----------------------------------------


def test_upgrade_from_0011_adds_the_held_counts_and_back(eng: sa.Engine) -> None:
    """A new table only: a database at feeds_0011 gets it empty (its sources stay), a snapshot
    is written there, and the way back drops exactly it."""
    from alembic import command

    with migrate._locked(eng, "feeds") as conn:
        command.upgrade(migrate.config("feeds", conn), "feeds_0011")
    assert "feed_held_counts" not in tables(eng)
    with eng.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO feed_log (at, level, message) VALUES (:at, 'info', 'kept')"),
            {"at": T0.replace(tzinfo=None)},
        )

    store = FeedStore(eng)
    assert migrate.current(eng, "feeds") == migrate.HEADS["feeds"] == "feeds_0012"
    assert migrate.differences(eng, "feeds") == []
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    with store.segment("otx") as seg:
        seg.upsert([Observable(Kind.IPV4, "192.0.2.1", None, {})], T0)
    assert store.record_held("otx", T0) == {"ipv4": 1}
    assert [(h.source, h.held) for h in store.held_history()] == [("otx", 1)]

    with migrate._locked(eng, "feeds") as conn:
        command.downgrade(migrate.config("feeds", conn), "feeds_0011")
    assert "feed_held_counts" not in tables(eng)
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT message FROM feed_log")).scalar() == "kept"
        assert conn.execute(sa.text("SELECT name FROM feed_sources")).scalar() == "otx"

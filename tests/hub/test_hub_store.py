"""feedgate.hub.store and feedgate.db on SQLite files."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hub_helpers import T0, make_pulse, open_store

import feedgate.hub.store as store_module
from feedgate import db
from feedgate.hub import schema
from feedgate.hub.model import utcnow
from feedgate.hub.store import HubError, HubStore, NotFoundError, PulsePage


@pytest.fixture
def store(tmp_path: Path) -> HubStore:
    return open_store(tmp_path / "hub.db")


# --- engine -----------------------------------------------------------------------------------


def test_sqlite_engine_pragmas(tmp_path: Path) -> None:
    eng = db.engine(str(tmp_path / "sub" / "x.db"))
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    assert (tmp_path / "sub" / "x.db").exists()
    url_eng = db.engine(f"sqlite:///{tmp_path / 'y.db'}")
    with url_eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    mem = HubStore(db.engine("sqlite://"))
    mem.add_pulse(make_pulse(1))
    assert mem.get_pulse(f"{1:024x}") is not None


def test_postgres_without_psycopg_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # psycopg is a dependency; an install without it is what a None in sys.modules looks like
    # (importlib.util.find_spec then finds nothing, and an import fails).
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(db.DatabaseConfigError, match=r"psycopg 3") as info:
        db.engine("postgresql://u:s3cret@localhost/hub")
    assert "s3cret" not in str(info.value)
    with pytest.raises(db.DatabaseConfigError, match="unsupported database 'mysql'"):
        db.engine("mysql://u@h/x")
    assert db.display_name("postgresql://u:s3cret@h/x") == "postgresql://u:***@h/x"


def test_default_locations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FEEDGATE_HUB_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert db.default_hub_db() == str(tmp_path / "feedgate" / "hub.db")
    monkeypatch.setenv("FEEDGATE_HUB_DB", "/x/y.db")
    assert db.default_hub_db() == "/x/y.db"


# --- pulses -----------------------------------------------------------------------------------


def test_round_trip_and_duplicates(store: HubStore) -> None:
    pulse = make_pulse(1, indicators=3)
    stored = store.add_pulse(pulse)
    assert [i.id for i in stored.indicators] == [1, 2, 3]
    assert store.get_pulse(pulse.id) == stored
    assert replace(stored, indicators=()) == replace(pulse, indicators=())
    assert store.get_pulse("f" * 24) is None
    with pytest.raises(HubError, match="already exists"):
        store.add_pulse(pulse)
    with pytest.raises(HubError, match="invalid pulse id"):
        store.add_pulse(replace(pulse, id="nothex"))
    # The author became a user (so `hub user add AlienVault` can give it a key).
    assert store.get_user("AlienVault") is not None
    # Explicit indicator ids are kept; the counter moves past them.
    second = make_pulse(2, indicators=1)
    second = replace(second, indicators=(replace(second.indicators[0], id=500),))
    assert store.add_pulse(second).indicators[0].id == 500
    assert store.add_pulse(make_pulse(3, indicators=1)).indicators[0].id == 501


def test_update_gives_new_revision_modified_label_and_seq(store: HubStore) -> None:
    pulse = store.add_pulse(make_pulse(1, indicators=3))
    other = store.add_pulse(make_pulse(2))
    label1, seq1 = store.pulse_position(pulse.id) or (None, 0)
    assert label1 == pulse.modified  # nothing forced a bump
    changed = replace(pulse, name="renamed", indicators=pulse.indicators[:1], revision=99)
    before = utcnow()
    updated = store.update_pulse(changed)
    assert updated.revision == 2
    assert updated.created == pulse.created
    assert updated.modified >= before
    assert store.get_pulse(pulse.id) == updated
    assert len(updated.indicators) == 1
    label2, seq2 = store.pulse_position(pulse.id) or (None, 0)
    assert label2 is not None and label1 is not None
    assert seq2 > seq1 and seq2 == store.max_seq()
    assert label2 > label1 and label2 > (store.pulse_position(other.id) or (T0, 0))[0]
    with pytest.raises(NotFoundError):
        store.update_pulse(make_pulse(9))
    assert store.delete_pulse(pulse.id)
    assert not store.delete_pulse(pulse.id)
    assert store.get_pulse(pulse.id) is None
    assert store.stats()["indicators"] == 2


def test_equal_modified_times_get_unique_increasing_labels(store: HubStore) -> None:
    same = T0
    store.add_pulses([make_pulse(n, modified=same) for n in range(1, 6)])
    entries = store.pulses_page("AlienVault", limit=10)
    labels = [e.label for e in entries]
    assert labels == [same + timedelta(microseconds=k) for k in range(5)]
    # An older pulse written later still gets a later label.
    store.add_pulse(make_pulse(9, modified=same - timedelta(days=1)))
    assert (store.pulse_position(f"{9:024x}") or (T0, 0))[0] == same + timedelta(microseconds=5)
    # Without backdating (a live hub's imports) the label is at least the current time.
    before = utcnow()
    live = store.add_pulse(make_pulse(10, modified=same), backdate=False)
    label = (store.pulse_position(live.id) or (T0, 0))[0]
    assert label >= before and live.modified == same


def test_labels_unique_and_increasing_under_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    open_store(path)  # create the schema once
    errors: list[BaseException] = []
    now = utcnow()

    def writer(w: int) -> None:
        try:
            local = open_store(path)  # its own engine and connections, like another process
            for k in range(20):
                n = w * 1000 + k
                local.add_pulse(make_pulse(n, modified=now, indicators=1))
                if k % 4 == 0:
                    local.update_pulse(make_pulse(n, indicators=2))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    store = open_store(path)
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.pulses.c.seq, schema.pulses.c.label).order_by(schema.pulses.c.seq)
        ).all()
    assert len(rows) == 100
    labels = [r.label for r in rows]
    assert len(set(labels)) == len(labels)
    assert labels == sorted(labels)
    assert store.count_pulses(None) == 100
    revisions = [e.pulse.revision for e in store.pulses_page(None, limit=1000)]
    assert revisions.count(2) == 25


def test_keyset_paging_on_a_snapshot(store: HubStore) -> None:
    store.add_pulses([make_pulse(n) for n in range(1, 51)])
    store.add_pulses([make_pulse(n, author="Other") for n in range(100, 110)])
    begin = T0 + timedelta(hours=5)  # exclusive: pulse 5 is out, 6.. are in
    end = T0 + timedelta(hours=45)  # inclusive: pulse 45 is in
    snapshot = store.max_seq()
    expected = [f"{n:024x}" for n in range(6, 46)]
    total = store.count_pulses("AlienVault", begin, end, snapshot)
    assert total == len(expected)

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = store.pulses_page(
            "AlienVault",
            begin_exclusive=begin,
            end_inclusive=end,
            after=after,
            max_seq=snapshot,
            limit=7,
        )
        if not page:
            break
        pages += 1
        seen.extend(e.pulse.id for e in page)
        after = page[-1].cursor
        if pages == 2:
            # Written mid-poll: new pulses inside the window (old modified times get labels
            # after everything stored, new ones now), and an update of a delivered pulse.
            store.add_pulse(make_pulse(60, modified=T0 + timedelta(hours=10)))
            store.add_pulse(make_pulse(61, modified=utcnow()))
            store.update_pulse(make_pulse(6))
    assert pages == 6
    assert seen == expected  # in label order, no duplicates, nothing new
    assert store.count_pulses("AlienVault", begin, end, snapshot) == total - 1  # 6 moved on
    # The next poll from the snapshot's end sees the update and the new pulses.
    fresh = store.pulses_page("AlienVault", begin_exclusive=end, limit=100)
    assert {e.pulse.id for e in fresh} >= {f"{n:024x}" for n in (6, 60, 61)}
    assert [e.pulse.author_name for e in store.pulses_page("Other", limit=100)] == ["Other"] * 10


def test_keyset_page_uses_the_index(store: HubStore) -> None:
    store.add_pulses([make_pulse(n) for n in range(1, 5)])
    query = (
        sa.select(schema.pulses.c.id)
        .where(schema.pulses.c.author_name == "AlienVault")
        .where(schema.pulses.c.label > 0)
        .order_by(schema.pulses.c.label)
        .limit(5)
    )
    with store.engine.connect() as conn:
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "ix_pulses_author_label" in plan
    assert "TEMP B-TREE" not in plan


def test_subscribed_search_and_lookup(store: HubStore) -> None:
    store.add_pulses([make_pulse(n) for n in range(1, 11)])
    store.add_pulses([make_pulse(n, author="Bob", name=f"Bob's QakBot {n}") for n in range(20, 25)])
    store.create_user("alice", api_key="k-alice", subscribe=["Bob"])

    def subscribed(**kwargs: Any) -> PulsePage:
        return store.pulses_by_authors(store.subscriptions("alice"), viewer="alice", **kwargs)

    page = subscribed(limit=3, page=1)
    assert page.count == 5
    assert [p.id for p in page.pulses] == [f"{n:024x}" for n in (24, 23, 22)]
    store.set_default_author("AlienVault")
    assert subscribed(limit=100).count == 15
    since = T0 + timedelta(hours=8)
    assert subscribed(modified_since=since).count == 2 + 5
    assert subscribed(limit=10, page=3).pulses == []

    found = store.search_pulses("qakbot", viewer="alice")
    assert found.count == 5 and all("QakBot" in p.name for p in found.pulses)
    assert store.search_pulses("EMOTET", viewer="alice").count == 15  # tags and names, any case
    store.add_pulse(replace(make_pulse(30, author="Bob"), public=False))
    assert store.search_pulses("emotet", viewer="alice").count == 15  # Bob's private one: no
    assert store.search_pulses("emotet", viewer="Bob").count == 16  # but Bob finds his own
    assert store.search_pulses("100%", viewer="alice").count == 0

    assert store.pulses_by_authors(["Bob"], viewer="alice").count == 5
    assert store.pulses_by_authors(["Bob"], viewer="Bob").count == 6
    late = T0 + timedelta(hours=23)
    assert store.pulses_by_authors(["Bob"], viewer="alice", modified_since=late).count == 1
    hits = store.indicator_lookup("ipv4", "192.0.2.1")
    assert len(hits) == 16  # the hub's own view: private pulses too
    assert hits[0].pulse_id == f"{30:024x}" and hits[0].indicator.type == "IPv4"
    assert len(store.indicator_lookup("ipv4", "192.0.2.1", viewer="alice")) == 15
    assert store.indicator_lookup("domain", "host3-1.example")[0].pulse_name.endswith(" 3")
    assert store.get_pulse(f"{30:024x}", viewer="alice") is None
    assert store.get_pulse(f"{30:024x}", viewer="Bob") is not None


def test_the_rest_listing_and_the_taxii_page_apply_one_visibility_rule(store: HubStore) -> None:
    """The REST API lists with ``pulses_by_authors``, a TAXII poll pages with
    ``pulses_page``/``pulse_keys_page``/``count_pulses``: for every viewer they hold the same
    pulses, and those are exactly the public ones and the viewer's own."""
    for n in range(1, 13):
        author = "Bob" if n % 3 else "AlienVault"
        store.add_pulse(replace(make_pulse(n, author=author), public=n % 4 != 0))
    for viewer in ("alice", "Bob", "AlienVault"):
        for author in ("Bob", "AlienVault"):
            every = store.pulses_page(author, limit=100)
            want = {e.pulse.id for e in every if e.pulse.public or author == viewer}
            rest = store.pulses_by_authors([author], viewer=viewer, limit=100)
            taxii = store.pulses_page(author, viewer=viewer, limit=100)
            keys = store.pulse_keys_page(author, viewer=viewer, limit=100)
            assert {p.id for p in rest.pulses} == want, (viewer, author)
            assert {e.pulse.id for e in taxii} == want, (viewer, author)
            assert {k[0] for k in keys} == want
            assert rest.count == store.count_pulses(author, viewer=viewer) == len(want)
    assert any(not e.pulse.public for e in store.pulses_page(None, limit=100))


# --- users, keys, passwords, subscriptions -----------------------------------------------------


def test_api_keys_are_stored_as_digests(tmp_path: Path) -> None:
    store = open_store(tmp_path / "hub.db")
    user, generated = store.create_user("alice", password="correct horse battery")
    assert generated is not None and len(generated) == 64
    assert store.user_by_api_key(generated) == user
    given = "my-very-own-api-key-0123456789"
    again, none = store.create_user("alice", api_key=given)
    assert none is None and again.username == "alice"
    assert store.user_by_api_key(given) == user  # both keys work
    assert store.user_by_api_key(generated) == user
    assert store.user_by_api_key("wrong") is None
    assert store.user_by_api_key("") is None
    # An existing user with a key gets no new generated key.
    assert store.create_user("alice")[1] is None
    with pytest.raises(HubError, match="already in use"):
        store.create_user("bob", api_key=given)
    assert store.get_user("bob") is None  # the failed transaction left nothing behind
    with pytest.raises(HubError, match="invalid user name"):
        store.create_user("two words")
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("hub.db"))
    assert generated.encode() not in raw
    assert given.encode() not in raw
    assert b"correct horse battery" not in raw
    from feedgate.hub.passwords import api_key_digest

    assert api_key_digest(given).encode() in raw


def test_password_kdf_and_cache(store: HubStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = store_module.verify_password

    def counting(password: str, encoded: str) -> bool:
        calls.append(password)
        return real(password, encoded)

    monkeypatch.setattr(store_module, "verify_password", counting)
    store.create_user("alice", password="s3cret")
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(schema.users.c.password_hash)).scalar()
    assert stored is not None and stored.startswith("scrypt$32768$8$1$")
    assert "s3cret" not in stored

    started = time.perf_counter()
    assert store.check_password("alice", "s3cret")
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert store.check_password("alice", "s3cret")
    second = time.perf_counter() - started
    assert calls == ["s3cret"]  # the second check came from the cache
    assert second < first
    assert not store.check_password("alice", "wrong")
    assert not store.check_password("alice", "wrong")
    assert calls == ["s3cret", "wrong", "wrong"]  # failures are never cached
    assert not store.check_password("nobody", "s3cret")
    # A new password invalidates the cached one.
    store.create_user("alice", password="n3w")
    assert not store.check_password("alice", "s3cret")
    assert store.check_password("alice", "n3w")
    # Two users with the same password get different salts.
    store.create_user("bob", password="n3w")
    with store.engine.connect() as conn:
        hashes = conn.execute(sa.select(schema.users.c.password_hash)).scalars().all()
    assert len({h for h in hashes if h}) == 2
    other = HubStore(store.engine)  # another process: no cache, same answer
    assert other.check_password("bob", "n3w")


def test_subscriptions_and_default_author(store: HubStore) -> None:
    for author in ("Bob", "Carol", "Aaron", "AlienVault"):
        store.create_user(author)
    with pytest.raises(NotFoundError, match="no such author: Bbo"):  # a typo is not a feed
        store.create_user("alice", subscribe=["Bob", "Bbo"])
    assert store.get_user("alice") is None  # nothing half done
    store.create_user("alice", subscribe=["Bob", "Carol"])
    assert store.subscriptions("alice") == ["Bob", "Carol"]
    store.subscribe("alice", "Bob")  # idempotent
    store.subscribe("alice", "Aaron")
    assert store.subscriptions("alice") == ["Aaron", "Bob", "Carol"]
    store.set_default_author("AlienVault")
    assert store.default_author() == "AlienVault"
    assert store.subscriptions("alice") == ["AlienVault", "Aaron", "Bob", "Carol"]
    store.subscribe("alice", "AlienVault")
    assert store.subscriptions("alice").count("AlienVault") == 1
    assert store.unsubscribe("alice", "Aaron")
    assert not store.unsubscribe("alice", "Aaron")
    store.create_user("zed")
    assert store.subscriptions("zed") == ["AlienVault"]
    store.set_default_author(None)
    assert store.subscriptions("zed") == []
    with pytest.raises(NotFoundError):
        store.subscriptions("nobody")
    with pytest.raises(NotFoundError):
        store.subscribe("nobody", "Bob")
    with pytest.raises(NotFoundError, match="no such author: nobody"):
        store.subscribe("alice", "nobody")

"""feedgate.mail.policy_store over a real database opened through the real migrations: the
default rule (there on a new database, gone for good once deleted), rule order and positions,
edits, validation messages, exceptions, the policy_version counter, the match log and its hits,
and the sources' fp_gate field (feeds.sources, feeds.store, revision feeds_0004)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from feedgate import migrate
from feedgate.db import engine
from feedgate.feeds.sources import Source, SourceError, make_source
from feedgate.feeds.store import FeedStore
from feedgate.mail.model import Action, Inspection, Match, Part
from feedgate.mail.policy import evaluate
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.rules import PolicyError
from pgserver import Database

SOURCES = ("otx", "partner")


def open_stores(url: str) -> tuple[FeedStore, PolicyStore]:
    feeds = FeedStore(engine(url))
    return feeds, PolicyStore(feeds.engine, feeds.source_names)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "feeds.db")


@pytest.fixture
def stores(db: str) -> Iterator[tuple[FeedStore, PolicyStore]]:
    feeds, policy = open_stores(db)
    for name in SOURCES:
        feeds.add_source(Source(name=name, hostname=f"{name}.example", collection="c"))
    yield feeds, policy
    feeds.close()


@pytest.fixture
def store(stores: tuple[FeedStore, PolicyStore]) -> PolicyStore:
    return stores[1]


def names(store: PolicyStore) -> list[tuple[int, str]]:
    return [(r.position, r.name) for r in store.list_rules()]


# --- the default rule -------------------------------------------------------------------


def test_a_new_database_has_the_default_rule(store: PolicyStore) -> None:
    (rule,) = store.list_rules()
    assert rule.to_dict() == {
        "name": "threat-feeds",
        "position": 1,
        "enabled": True,
        "parts": [],
        "sources": [],
        "kinds": [],
        "action": "quarantine",
        "subject_prefix": None,
    }
    assert store.get_rule("threat-feeds") == rule


def test_the_default_rule_is_editable(store: PolicyStore) -> None:
    edited = store.edit_rule("threat-feeds", action="tag", kinds=["domain", "url"])
    assert (edited.action, edited.kinds, edited.subject_prefix) == (
        Action.TAG,
        ("domain", "url"),
        "[THREAT]",
    )


def test_deleting_the_default_rule_sticks_across_reopening(db: str) -> None:
    feeds, policy = open_stores(db)
    policy.delete_rule("threat-feeds")
    feeds.close()
    feeds, policy = open_stores(db)
    assert policy.list_rules() == []
    feeds.close()
    migrate.upgrade(engine(db), "feeds")  # at head: nothing runs again
    assert PolicyStore(engine(db), list).list_rules() == []


def test_the_default_rule_quarantines_anything_any_feed_lists(store: PolicyStore) -> None:
    found = Match(Part.FROM, "email", "x@evil.example", "x@evil.example", "partner", 9)
    verdict = evaluate([found], Inspection(()), store.load())
    assert (verdict.action, verdict.rules) == (Action.QUARANTINE, ("threat-feeds",))


# --- order and edits --------------------------------------------------------------------


def test_rules_are_appended_inserted_and_moved_without_gaps(store: PolicyStore) -> None:
    store.add_rule("b", action="log")
    store.add_rule("a", action="reject", position=1)
    store.add_rule("c", action="drop", position=99)  # past the end: last
    assert names(store) == [(1, "a"), (2, "threat-feeds"), (3, "b"), (4, "c")]
    store.edit_rule("c", position=2)
    assert names(store) == [(1, "a"), (2, "c"), (3, "threat-feeds"), (4, "b")]
    store.edit_rule("a", position=4)
    assert names(store) == [(1, "c"), (2, "threat-feeds"), (3, "b"), (4, "a")]
    store.delete_rule("threat-feeds")
    assert names(store) == [(1, "c"), (2, "b"), (3, "a")]


def test_rules_evaluate_in_their_stored_order(store: PolicyStore) -> None:
    store.delete_rule("threat-feeds")
    store.add_rule("second-tag", action="tag", subject_prefix="[2]")
    store.add_rule("first-tag", action="tag", subject_prefix="[1]", position=1)
    found = Match(Part.URL, "domain", "evil.example", "evil.example", "otx", 1)
    verdict = evaluate([found], Inspection(()), store.load())
    assert verdict.rules == ("first-tag", "second-tag")
    assert verdict.subject_prefix == "[1]"


def test_edit_renames_and_changes_fields(store: PolicyStore) -> None:
    store.add_rule("hashes", kinds=["md5"], action="tag", subject_prefix="[BAD]")
    rule = store.edit_rule(
        "hashes", name="attachments", parts=["attachment"], sources=["partner"], action="reject"
    )
    assert rule.name == "attachments"
    assert (rule.parts, rule.sources, rule.kinds) == ((Part.ATTACHMENT,), ("partner",), ("md5",))
    assert rule.action is Action.REJECT and rule.subject_prefix is None  # no longer tags
    assert [r.name for r in store.list_rules()] == ["threat-feeds", "attachments"]
    with pytest.raises(PolicyError, match="no rule named 'hashes'"):
        store.get_rule("hashes")


def test_set_enabled(store: PolicyStore) -> None:
    assert store.set_enabled("threat-feeds", False).enabled is False
    found = Match(Part.URL, "domain", "evil.example", "evil.example", "otx", 1)
    assert evaluate([found], Inspection(()), store.load()).action is Action.DELIVER
    assert store.set_enabled("threat-feeds", True).enabled is True


def test_words_in_any_case_and_any_means_all(store: PolicyStore) -> None:
    rule = store.add_rule("r", parts="URL, From", kinds=["SHA256"], action="Header")
    assert (rule.parts, rule.kinds, rule.action) == (
        (Part.FROM, Part.URL),
        ("sha256",),
        Action.HEADER,
    )
    assert store.edit_rule("r", parts=["any"]).parts == ()


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "x", "parts": ["body"]},
            "parts: unknown part 'body': the parts are client-ip, envelope-from, from, sender, "
            "reply-to, url, attachment (none: every part)",
        ),
        (
            {"name": "x", "kinds": ["mutex"]},
            "kinds: unknown observable kind 'mutex': the kinds are ipv4, ipv6, cidr, domain, "
            "url, email, md5, sha1, sha256 (none: every kind)",
        ),
        (
            {"name": "x", "action": "bounce"},
            "action: unknown action 'bounce': choose from reject, drop, quarantine, tag, "
            "header, log",
        ),
        ({"name": "x", "action": "deliver"}, "action: deliver is what happens when no rule"),
        (
            {"name": "x", "sources": ["otx", "nope"]},
            "sources: no source named 'nope': the sources are otx, partner (none: any source)",
        ),
        ({"name": "threat-feeds"}, "a rule named 'threat-feeds' exists"),
        ({"name": "bad name"}, "name: 'bad name' cannot be used"),
        ({"name": ""}, "name: empty"),
        ({"name": "x", "subject_prefix": "[X]"}, "subject_prefix: only a tag rule"),
        (
            {"name": "x", "action": "tag", "subject_prefix": "a\r\nBcc: x"},
            "subject_prefix: 'a\\r\\nBcc: x' cannot be used",
        ),
        ({"name": "x", "position": 0}, "position: 0 cannot be used: give 1 for the first rule"),
        # what a REST client sends is quoted as JSON spells it, not as Python does
        ({"name": "x", "position": True}, "position: expected a whole number, got true: give 1"),
        ({"name": "x", "position": "1"}, "position: expected a whole number, got '1': give 1"),
        ({"name": "x", "position": 1.5}, "position: expected a whole number, got 1.5: give 1"),
        ({"name": 7}, "name: expected text, got 7: give the rule a name"),
        ({"name": "x", "enabled": None}, "enabled: null: give true or false"),
        ({"name": "x", "enabled": 1}, "enabled: 1: give true or false"),
        ({"name": "x", "action": None}, "action: unknown action null: choose from"),
        ({"name": "x", "action": ["log"]}, 'action: unknown action ["log"]: choose from'),
        ({"name": "x", "parts": True}, "parts: give a list of names, not true"),
        ({"name": "x", "kinds": {"url": 1}}, 'kinds: give a list of names, not {"url": 1}'),
        ({"name": "x", "sources": [None]}, "sources: null is not a name: give text"),
        ({"name": "x", "sources": [["otx"]]}, 'sources: ["otx"] is not a name: give text'),
        (
            {"name": "x", "action": "tag", "subject_prefix": False},
            "subject_prefix: expected text, got false: give the text to put before",
        ),
    ],
)
def test_rule_validation_messages(
    store: PolicyStore, kwargs: dict[str, object], message: str
) -> None:
    kwargs.setdefault("action", "quarantine")
    with pytest.raises(PolicyError) as caught:
        store.add_rule(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    assert names(store) == [(1, "threat-feeds")]  # nothing was stored


def test_no_sources_yet_says_how_to_add_one(tmp_path: Path) -> None:
    feeds, policy = open_stores(str(tmp_path / "empty.db"))
    with pytest.raises(PolicyError, match=r"there are no sources yet \(add one with feedgate"):
        policy.add_rule("x", sources=["otx"], action="log")
    feeds.close()


def test_edit_validation(store: PolicyStore) -> None:
    store.add_rule("other", action="log")
    with pytest.raises(PolicyError, match="a rule named 'other' exists"):
        store.edit_rule("threat-feeds", name="other")
    with pytest.raises(PolicyError, match="unknown field colour: a rule's fields are name, parts,"):
        store.edit_rule("threat-feeds", colour="red")
    with pytest.raises(
        PolicyError, match="no rule named 'nope': the rules are threat-feeds, other"
    ):
        store.edit_rule("nope", enabled=False)
    with pytest.raises(PolicyError, match="no rule named 'nope'"):
        store.delete_rule("nope")


def test_an_edit_that_changes_nothing_is_refused_naming_what_can_change(
    store: PolicyStore,
) -> None:
    before = store.version()
    with pytest.raises(PolicyError) as caught:
        store.edit_rule("threat-feeds")
    assert caught.value.message == (
        "nothing to change: give one or more of the rule's fields name, parts, sources, kinds,"
        " action, position, enabled, subject_prefix"
    )
    assert store.version() == before  # nothing was written, no gateway reloads


def test_a_rule_naming_a_deleted_source_can_still_be_edited(
    stores: tuple[FeedStore, PolicyStore],
) -> None:
    feeds, store = stores
    store.add_rule("partner-only", sources=["partner"], action="drop")
    feeds.delete_source("partner")
    assert store.edit_rule("partner-only", action="log").sources == ("partner",)
    with pytest.raises(PolicyError, match="no source named 'partner'"):
        store.edit_rule("partner-only", sources=["partner"])


# --- exceptions -------------------------------------------------------------------------


def test_exceptions_of_each_kind_are_classified_and_normalised(store: PolicyStore) -> None:
    given = {
        "Example.COM.": ("domain", "example.com"),
        "192.0.2.7": ("ipv4", "192.0.2.7"),
        "2001:DB8::7": ("ipv6", "2001:db8::7"),
        "198.51.100.0/24": ("cidr", "198.51.100.0/24"),
        "198.51.100.9/32": ("ipv4", "198.51.100.9"),
        "Boss@Example.NET": ("email", "boss@example.net"),
        "HTTPS://Example.org:443/a": ("url", "https://example.org/a"),
        "D41D8CD98F00B204E9800998ECF8427F": ("md5", "d41d8cd98f00b204e9800998ecf8427f"),
        "a" * 40: ("sha1", "a" * 40),
        "b" * 64: ("sha256", "b" * 64),
    }
    for value in given:
        store.add_exception(value, f"note for {value}")
    listed = {(e.kind, e.value) for e in store.list_exceptions()}
    assert listed == set(given.values())
    assert all(e.note.startswith("note for ") for e in store.list_exceptions())


@pytest.mark.parametrize(
    ("value", "note", "field", "message"),
    [
        ("", "n", "value", "empty exception: give a domain, e-mail address, IP address or"),
        ("not a value!", "n", "value", "'not a value!' is not a domain, e-mail address, IP"),
        ("10.0.0.1/8", "n", "value", "'10.0.0.1/8' is not a domain, e-mail address, IP"),
        ("*.example.com", "n", "value", "'*.example.com': a domain exception covers its"),
        ("example.com", "  ", "note", "an exception needs a note saying why it is trusted"),
        ("example.com", "a\nb", "note", "the note contains control characters"),
        ("x" * 3000 + ".com", "n", "value", "exception of 3004 characters: at most 2048"),
        (None, "n", "value", "empty exception: give a domain"),
        (True, "n", "value", "expected text, got true: give a domain, e-mail address"),
        (["a.example"], "n", "value", 'expected text, got ["a.example"]: give a domain'),
        ("example.com", None, "note", "an exception needs a note saying why it is trusted"),
        ("example.com", 42, "note", "expected text, got 42: give the note saying why"),
    ],
)
def test_exception_validation_messages(
    store: PolicyStore, value: object, note: object, field: str, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        store.add_exception(value, note)
    assert str(caught.value).startswith(message)
    assert caught.value.field == field
    assert store.list_exceptions() == []


def test_exception_duplicates_and_deletion_by_any_spelling(store: PolicyStore) -> None:
    store.add_exception("example.com", "ours")
    with pytest.raises(PolicyError, match=r"example.com is on the exception list already \(note"):
        store.add_exception("EXAMPLE.com.", "again")
    store.delete_exception("Example.Com")
    assert store.list_exceptions() == []
    with pytest.raises(PolicyError) as caught:
        store.delete_exception("example.com")
    assert caught.value.message == (
        "example.com is not on the exception list; 'feedgate exception list --format jsonl'"
        " shows the values exactly"
    )


def test_an_email_exception_is_one_entry_whatever_the_case(store: PolicyStore) -> None:
    entry = store.add_exception("CEO@Example.com", "the CEO")
    assert (entry.kind, entry.value) == ("email", "ceo@example.com")
    with pytest.raises(PolicyError, match=r"ceo@example\.com is on the exception list already"):
        store.add_exception("ceo@example.com", "again")
    store.delete_exception("Ceo@EXAMPLE.com")
    assert store.list_exceptions() == []


def test_a_mixed_case_email_row_from_before_is_found_and_deleted(store: PolicyStore) -> None:
    """A row stored as typed (before addresses were lower-cased): a duplicate of it is refused
    and one delete, spelt any way, removes it."""
    from feedgate.mail.schema import exceptions_table
    from feedgate.observables import observable_digest

    with store.engine.begin() as conn:
        conn.execute(
            exceptions_table.insert().values(
                digest=observable_digest("email", "CEO@example.com"),
                kind="email",
                value="CEO@example.com",
                note="old row",
            )
        )
    with pytest.raises(PolicyError, match=r"CEO@example\.com is on the exception list already"):
        store.add_exception("ceo@EXAMPLE.com", "again")
    before = store.version()
    store.delete_exception("ceo@example.com")
    assert store.list_exceptions() == []
    assert store.version() == before + 1


def test_hits_top_is_checked_once_for_both_faces(store: PolicyStore) -> None:
    from feedgate.mail.policy_store import MAX_TOP, check_top

    assert (check_top(0), check_top(MAX_TOP), check_top("25")) == (0, MAX_TOP, 25)
    for bad, shown in ((MAX_TOP + 1, "1001"), (-1, "-1"), ("5000", "'5000'"), (True, "true"),
                       ("1e3", "'1e3'"), ("9" * 30, "'" + "9" * 30 + "'")):  # fmt: skip
        with pytest.raises(PolicyError) as caught:
            store.hits(top=bad)  # type: ignore[arg-type]
        assert caught.value.field == "top"
        assert caught.value.message == (
            f"top: {shown} cannot be used: give a whole number from 0 to {MAX_TOP}"
        )


def test_stored_exceptions_apply(store: PolicyStore) -> None:
    store.add_exception("192.0.2.0/24", "test net")
    found = Match(Part.CLIENT_IP, "ipv4", "192.0.2.77", "192.0.2.77", "otx", 4)
    verdict = evaluate([found], Inspection(()), store.load())
    assert verdict.action is Action.DELIVER
    assert verdict.excepted[0].exception == "192.0.2.0/24"


# --- the policy version counter ----------------------------------------------------------


def test_every_change_bumps_the_policy_version_and_only_those(
    stores: tuple[FeedStore, PolicyStore],
) -> None:
    feeds, store = stores
    seen = [store.version()]
    feeds_version = feeds.version()

    def changed() -> None:
        seen.append(store.version())
        assert seen[-1] > seen[-2]

    store.add_rule("r", action="log")
    changed()
    store.edit_rule("r", action="drop")
    changed()
    store.set_enabled("r", False)
    changed()
    store.delete_rule("r")
    changed()
    store.add_exception("example.com", "ours")
    changed()
    store.delete_exception("example.com")
    changed()
    assert store.load().version == seen[-1]
    with pytest.raises(PolicyError):
        store.add_rule("r", action="nope")
    assert store.version() == seen[-1]  # a refused change changes nothing
    assert feeds.version() == feeds_version  # the matcher's counter is not the policy's


# --- the match log ----------------------------------------------------------------------


def test_record_and_hits_with_an_injected_clock(store: PolicyStore) -> None:
    now = datetime.now(UTC)  # the real day the test runs: nothing can overtake it
    store.add_rule("reject-partner", sources=["partner"], action="reject", position=1)
    policy = store.load()

    def scan(at: datetime, message_id: str, *matches: Match) -> int:
        verdict = evaluate(matches, Inspection((), message_id=message_id), policy)
        return store.record(verdict, message_id, at)

    evil_from = Match(Part.FROM, "domain", "evil.example", "evil.example", "otx", 1)
    evil_url = Match(Part.URL, "domain", "evil.example", "evil.example", "otx", 1)
    ip = Match(Part.CLIENT_IP, "ipv4", "198.51.100.7", "198.51.100.7", "partner", 2)
    google = Match(Part.URL, "domain", "google.com", "google.com", "otx", 3)  # suppressed

    old = now - timedelta(days=3)
    assert scan(old, "<old@example.net>", evil_from) == 1
    assert scan(now - timedelta(hours=1), "<a@example.net>", evil_from, evil_url, ip) == 2
    assert scan(now, "<b@example.net>", evil_url, google) == 1
    assert scan(now, "<c@example.net>", google) == 0

    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT message_id, parts, rule, action, observable_id, kind, value, source"
                " FROM mail_match_log ORDER BY id"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (
            "<old@example.net>",
            "from",
            "threat-feeds",
            "quarantine",
            1,
            "domain",
            "evil.example",
            "otx",
        ),
        (
            "<a@example.net>",
            "from,url",
            "threat-feeds",
            "reject",
            1,
            "domain",
            "evil.example",
            "otx",
        ),
        (
            "<a@example.net>",
            "client-ip",
            "reject-partner",
            "reject",
            2,
            "ipv4",
            "198.51.100.7",
            "partner",
        ),
        (
            "<b@example.net>",
            "url",
            "threat-feeds",
            "quarantine",
            1,
            "domain",
            "evil.example",
            "otx",
        ),
    ]

    everything = store.hits()
    assert [(s.source, s.hits, s.messages, s.last) for s in everything.sources] == [
        ("otx", 3, 3, now),
        ("partner", 1, 1, now - timedelta(hours=1)),
    ]
    assert [(t.source, t.value, t.hits) for t in everything.top] == [
        ("otx", "evil.example", 3),
        ("partner", "198.51.100.7", 1),
    ]
    recent = store.hits(since=now - timedelta(days=1))
    assert [(s.source, s.hits) for s in recent.sources] == [("otx", 2), ("partner", 1)]
    only = store.hits(source="partner", since=now - timedelta(days=1))
    assert [(s.source, s.hits) for s in only.sources] == [("partner", 1)]
    assert [t.value for t in store.hits(top=1).top] == ["evil.example"]
    assert store.hits(since=now + timedelta(seconds=1)).to_dict() == {"sources": [], "top": []}
    assert everything.to_dict()["top"][0] == {
        "source": "otx",
        "mode": "enforce",
        "kind": "domain",
        "value": "evil.example",
        "hits": 3,
        "last": now.isoformat(),
    }


# --- the sources' fp_gate ------------------------------------------------------------------


def test_fp_gate_defaults_on_is_validated_and_stored(
    stores: tuple[FeedStore, PolicyStore],
) -> None:
    feeds, _ = stores
    assert feeds.get_source("otx").fp_gate is True  # type: ignore[union-attr]
    off = make_source({"fp_gate": False}, feeds.get_source("otx"))
    feeds.update_source(off)
    assert feeds.get_source("otx").fp_gate is False  # type: ignore[union-attr]
    with pytest.raises(
        SourceError, match=r"fp_gate: 'no' \(str\) cannot be used: give true or false"
    ):
        make_source({"name": "x", "hostname": "x.example", "collection": "c", "fp_gate": "no"})
    gates = {s.name: s.fp_gate for s in feeds.list_sources()}
    assert gates == {"otx": False, "partner": True}
    assert feeds.source_names() == ["otx", "partner"]


def test_fp_gate_column_is_on_for_sources_from_before_feeds_0004(db: str) -> None:
    from alembic import command

    e = engine(db)
    with migrate._locked(e, "feeds") as conn:
        command.upgrade(migrate.config("feeds", conn), "feeds_0003")
    with e.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO feed_sources (name, description, enabled, hostname, port,"
                " use_https, poll_path, collection, taxii_version, verify_ssl,"
                " polling_interval_us, age_us, poll_segment_us, max_retries, enforce)"
                " VALUES ('old', '', 1, 'old.example', 443, 1, '/p', 'c', '1.1', 1, 3600000000,"
                " 2592000000000, 86400000000, 3, '[]')"
            )
        )
    feeds, policy = open_stores(db)
    assert feeds.get_source("old").fp_gate is True  # type: ignore[union-attr]
    assert [r.name for r in policy.list_rules()] == ["threat-feeds"]
    assert migrate.differences(feeds.engine, "feeds") == []
    feeds.close()


# --- PostgreSQL --------------------------------------------------------------------------


def test_the_whole_policy_on_both_databases(any_db: Database) -> None:
    """The same calls on SQLite and on a real PostgreSQL: the default rule, order, exceptions,
    the counter and the match log."""
    feeds, store = open_stores(any_db.url)
    feeds.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    assert names(store) == [(1, "threat-feeds")]
    store.add_rule("first", sources=["otx"], kinds=["url"], action="reject", position=1)
    store.add_exception("example.com", "ours")
    policy = store.load()
    assert policy.version == store.version() == 2
    assert names(store) == [(1, "first"), (2, "threat-feeds")]
    now = datetime.now(UTC)
    hit = Match(Part.URL, "url", "http://evil.example/x", "http://evil.example/x", "otx", 5)
    ours = Match(Part.URL, "domain", "www.example.com", "www.example.com", "otx", 6)
    verdict = evaluate([hit, ours], Inspection((), message_id="<p@example.net>"), policy)
    assert (verdict.action, verdict.rules) == (Action.REJECT, ("first", "threat-feeds"))
    assert store.record(verdict, "<p@example.net>", now) == 1
    assert [(s.source, s.hits, s.last) for s in store.hits(since=now).sources] == [("otx", 1, now)]
    store.delete_rule("threat-feeds")
    feeds.close()
    feeds, store = open_stores(any_db.url)
    assert names(store) == [(1, "first")]
    feeds.close()


def test_the_messages_an_observable_matched_newest_first(store: PolicyStore) -> None:
    now = datetime.now(UTC)
    policy = store.load()
    evil = Match(Part.FROM, "domain", "evil.example", "evil.example", "otx", 7)
    in_url = Match(Part.URL, "domain", "evil.example", "evil.example", "otx", 7)
    other = Match(Part.URL, "domain", "other.example", "other.example", "otx", 9)
    for n, matches in enumerate(([evil], [evil, in_url, other], [other])):
        message = f"<m{n}@example.net>"
        verdict = evaluate(matches, Inspection((), message_id=message), policy)
        store.record(verdict, message, now - timedelta(hours=3 - n))
    found = store.matches_of("otx", 7)
    assert [m.message_id for m in found] == ["<m1@example.net>", "<m0@example.net>"]
    assert found[0].parts == ("from", "url") and found[0].rule == "threat-feeds"
    assert found[0].action == "quarantine" and found[0].at == now - timedelta(hours=2)
    assert [m.message_id for m in store.matches_of("otx", 7, limit=1)] == ["<m1@example.net>"]
    assert store.matches_of("other-source", 7) == []


def test_matches_no_rule_decides_are_logged_as_delivered(store: PolicyStore) -> None:
    """All rules off: the feed still hit, and feedgate hits shows it (rule NULL, deliver)."""
    store.set_enabled("threat-feeds", False)
    now = datetime.now(UTC)
    found = Match(Part.REPLY_TO, "email", "x@evil.example", "x@evil.example", "otx", 8)
    verdict = evaluate([found], Inspection(()), store.load())
    assert store.record(verdict, None, now) == 1
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT parts, rule, action FROM mail_match_log")).one()
    assert tuple(row) == ("reply-to", None, "deliver")
    assert [(s.source, s.hits, s.messages) for s in store.hits().sources] == [("otx", 1, 0)]

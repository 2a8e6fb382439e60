"""``feedgate rule``, ``feedgate exception`` and ``feedgate hits`` as users run them (processes on
a real SQLite database): every subcommand, their tables and JSON lines, order and positions, the
refusals' one line and exit status, and ``source add/edit --[no-]fp-gate``."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from policy_faces import Cli, add_sources, fill_match_log


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def sources(cli: Cli) -> Cli:
    """The CLI on a database with the sources otx and partner."""
    feeds, _policy = cli.stores()
    add_sources(feeds, "otx", "partner")
    feeds.close()
    return cli


DEFAULT = {
    "name": "threat-feeds",
    "position": 1,
    "enabled": True,
    "parts": [],
    "sources": [],
    "kinds": [],
    "action": "quarantine",
    "subject_prefix": None,
}


def table(text: str) -> list[list[str]]:
    """The cells of a printed table: columns are two or more spaces apart."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


def test_readers_on_a_missing_database_say_so_and_make_nothing(cli: Cli) -> None:
    for command in (("rule", "list"), ("rule", "show", "x"), ("exception", "list"), ("hits",)):
        assert "no such database" in cli.error(*command, status=1)
    assert not cli.db.exists()


def test_a_new_database_lists_the_default_rule(cli: Cli) -> None:
    cli.ok("exception", "add", "partner.example", "--note", "made the database")  # a writer
    assert table(cli.ok("rule", "list")) == [
        ["POS", "NAME", "ENABLED", "PARTS", "SOURCES", "KINDS", "ACTION"],
        ["1", "threat-feeds", "yes", "any", "any", "any", "quarantine"],
    ]
    assert cli.jsonl("rule", "list") == [DEFAULT]
    shown = dict(line.split(":", 1) for line in cli.ok("rule", "show", "threat-feeds").splitlines())
    assert {k: v.strip() for k, v in shown.items()} == {
        "name": "threat-feeds",
        "position": "1",
        "enabled": "yes",
        "parts": "any",
        "sources": "any",
        "kinds": "any",
        "action": "quarantine",
        "subject_prefix": "-",
    }


def test_add_places_rules_and_the_others_move(sources: Cli) -> None:
    cli = sources
    out = cli.ok(
        "rule", "add", "reject-phish", "--part", "url,from", "--source", "otx",
        "--kind", "domain", "--kind", "url", "--action", "REJECT", "--position", "1",
    )  # fmt: skip
    assert out.strip() == (
        "added rule #1 reject-phish: if from, url matches otx (domain, url) then reject"
    )
    out = cli.ok("rule", "add", "tag-all", "--action", "tag", "--disabled")
    assert out.strip() == (
        "added rule #3 tag-all: if any part matches any source (any kind) then tag [THREAT]"
        " (disabled)"
    )
    cli.ok("rule", "add", "log-ip", "--part", "client-ip", "--action", "log", "--position", "99")
    cli.ok("rule", "add", "hdr", "--action", "header", "--position", "2")
    rows = cli.jsonl("rule", "list")
    assert [(r["position"], r["name"]) for r in rows] == [
        (1, "reject-phish"),
        (2, "hdr"),
        (3, "threat-feeds"),
        (4, "tag-all"),
        (5, "log-ip"),
    ]
    assert rows[0] == {
        "name": "reject-phish",
        "position": 1,
        "enabled": True,
        "parts": ["from", "url"],
        "sources": ["otx"],
        "kinds": ["domain", "url"],
        "action": "reject",
        "subject_prefix": None,
    }
    assert rows[3]["enabled"] is False and rows[3]["subject_prefix"] == "[THREAT]"
    listed = table(cli.ok("rule", "list"))
    assert listed[1] == ["1", "reject-phish", "yes", "from, url", "otx", "domain, url", "reject"]
    assert listed[4] == ["4", "tag-all", "no", "any", "any", "any", "tag [THREAT]"]


def test_edit_renames_moves_and_goes_back_to_any(sources: Cli) -> None:
    cli = sources
    cli.ok("rule", "add", "r1", "--part", "url", "--source", "otx", "--kind", "url",
           "--action", "reject")  # fmt: skip
    cli.ok("rule", "add", "t1", "--action", "tag", "--subject-prefix", "[SPAM?]")
    out = cli.ok("rule", "edit", "r1", "--name", "r2", "--position", "1", "--action", "drop")
    assert out.strip() == "updated rule #1 r2: if url matches otx (url) then drop"
    out = cli.ok("rule", "edit", "r2", "--part", "any", "--source", "any", "--kind", "ALL")
    assert out.strip() == "updated rule #1 r2: if any part matches any source (any kind) then drop"
    cli.ok("rule", "edit", "r2", "--source", "otx", "--source", "partner")
    assert [(r["position"], r["name"]) for r in cli.jsonl("rule", "list")] == [
        (1, "r2"),
        (2, "threat-feeds"),
        (3, "t1"),
    ]
    assert cli.jsonl("rule", "list")[0]["sources"] == ["otx", "partner"]
    cli.ok("rule", "edit", "t1", "--subject-prefix", "")  # back to the default prefix
    assert cli.jsonl("rule", "list")[2]["subject_prefix"] == "[THREAT]"
    cli.ok("rule", "edit", "t1", "--action", "log")  # not a tag rule: the prefix goes
    assert cli.jsonl("rule", "list")[2]["subject_prefix"] is None
    assert cli.error("rule", "edit", "t1", status=2) == (
        "nothing to change: give one or more of --name, --part, --source, --kind, --action,"
        " --position, --subject-prefix (enabled: feedgate rule enable or disable)"
    )  # the library's refusal, as PATCH /api/v1/rules/t1 {} is 400


def test_enable_disable_delete(sources: Cli) -> None:
    cli = sources
    cli.ok("rule", "add", "a", "--action", "log")
    assert cli.ok("rule", "disable", "a").strip() == "rule a disabled"
    assert cli.jsonl("rule", "list")[1]["enabled"] is False
    assert cli.ok("rule", "enable", "a").strip() == "rule a enabled"
    assert cli.jsonl("rule", "list")[1]["enabled"] is True
    assert cli.ok("rule", "delete", "threat-feeds").strip() == "deleted rule threat-feeds"
    assert [(r["position"], r["name"]) for r in cli.jsonl("rule", "list")] == [(1, "a")]
    cli.ok("rule", "delete", "a")
    assert "no rules" in cli.ok("rule", "list")
    assert cli.jsonl("rule", "list") == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("add", "x", "--part", "body", "--action", "log"),
            "parts (--part): unknown part 'body': the parts are client-ip, envelope-from, from,"
            " sender, reply-to, url, attachment (none: every part)",
        ),
        (
            ("add", "x", "--kind", "mutex", "--action", "log"),
            "kinds (--kind): unknown observable kind 'mutex': the kinds are ",
        ),
        (
            ("add", "x", "--source", "nosuch", "--action", "log"),
            "sources (--source): no source named 'nosuch': the sources are otx, partner"
            " (none: any source)",
        ),
        (("add", "x", "--action", "burn"), "action (--action): unknown action 'burn': choose"),
        (("add", "x", "--action", "deliver"), "action (--action): deliver is what happens"),
        (("add", "x", "--action", "log", "--position", "0"), "position (--position): 0 cannot"),
        (("add", "x y", "--action", "log"), "name (NAME): 'x y' cannot be used: use at most 64"),
        (
            ("add", "threat-feeds", "--action", "log"),
            "name (NAME): a rule named 'threat-feeds' exists: choose another name",
        ),
        (
            ("add", "x", "--action", "log", "--subject-prefix", "[X]"),
            "subject_prefix (--subject-prefix): only a tag rule puts a prefix on the Subject",
        ),
        (("edit", "threat-feeds", "--name", "-x"), "name (--name): '-x' cannot be used"),
        (("edit", "threat-feeds", "--source", "gone"), "sources (--source): no source named"),
    ],
)
def test_a_refused_field_is_one_line_naming_it_and_its_option(
    sources: Cli, args: tuple[str, ...], line: str
) -> None:
    assert sources.error("rule", *args, status=2).startswith(line)
    assert sources.jsonl("rule", "list") == [DEFAULT]  # nothing was written


@pytest.mark.parametrize(
    "args", [("show", "nosuch"), ("delete", "nosuch"), ("enable", "nosuch"),
             ("edit", "nosuch", "--action", "log")]
)  # fmt: skip
def test_a_missing_rule_is_exit_1_naming_the_rules_there_are(
    sources: Cli, args: tuple[str, ...]
) -> None:
    line = sources.error("rule", *args, status=1)
    assert line == "no rule named 'nosuch': the rules are threat-feeds"


def test_a_missing_action_is_click_usage(sources: Cli) -> None:
    result = sources.run("rule", "add", "x")
    assert result.returncode == 2 and "--action" in result.stderr


def test_exceptions_add_list_delete(cli: Cli) -> None:
    out = cli.ok("exception", "add", "Mail.Partner.Example", "--note", "ticket 4711")
    assert out.strip() == (
        "added exception domain mail.partner.example: covers itself, its subdomains, URLs on"
        " them and addresses at them"
    )
    cli.ok("exception", "add", "192.0.2.0/24", "--note", "our relays")
    cli.ok("exception", "add", "https://Files.Example/a/b?c", "--note", "shared drive")
    cli.ok("exception", "add", "ceo@Example.com", "--note", "the CEO")
    assert cli.jsonl("exception", "list") == [
        {"kind": "cidr", "value": "192.0.2.0/24", "note": "our relays"},
        {"kind": "domain", "value": "mail.partner.example", "note": "ticket 4711"},
        {"kind": "email", "value": "ceo@example.com", "note": "the CEO"},
        {"kind": "url", "value": "https://files.example/a/b?c", "note": "shared drive"},
    ]
    assert table(cli.ok("exception", "list"))[:2] == [
        ["KIND", "VALUE", "NOTE"],
        ["cidr", "192.0.2.0/24", "our relays"],
    ]
    out = cli.ok("exception", "delete", "MAIL.partner.example.")
    assert out.strip() == "deleted exception domain mail.partner.example"
    cli.ok("exception", "delete", "https://files.example/a/b?c")
    assert [e["value"] for e in cli.jsonl("exception", "list")] == [
        "192.0.2.0/24",
        "ceo@example.com",
    ]


@pytest.mark.parametrize(
    ("args", "status", "line"),
    [
        (("add", "partner.example"), 2, "note (--note): an exception needs a note saying why"),
        (("add", "*.partner.example", "--note", "n"), 2, "value (VALUE): '*.partner.example': a"
         " domain exception covers its subdomains already; give 'partner.example'"),
        (("add", "not a value", "--note", "n"), 2, "value (VALUE): 'not a value' is not a"
         " domain, e-mail address, IP address or network, URL or hash"),
        (("add", "PARTNER.example", "--note", "again"), 2, "value (VALUE): partner.example is"
         " on the exception list already (note: first)"),
        (("delete", "other.example"), 1, "other.example is not on the exception list;"
         " 'feedgate exception list --format jsonl' shows the values exactly"),
    ],
)  # fmt: skip
def test_a_refused_exception_is_one_line(
    cli: Cli, args: tuple[str, ...], status: int, line: str
) -> None:
    cli.ok("exception", "add", "partner.example", "--note", "first")
    assert cli.error("exception", *args, status=status).startswith(line)
    assert len(cli.jsonl("exception", "list")) == 1


def test_an_email_exception_is_one_entry_whatever_its_case(cli: Cli) -> None:
    out = cli.ok("exception", "add", "CEO@Example.com", "--note", "the CEO")
    assert out.strip() == "added exception email ceo@example.com: covers this address"
    assert cli.error("exception", "add", "ceo@example.com", "--note", "again") == (
        "value (VALUE): ceo@example.com is on the exception list already (note: the CEO)"
    )
    assert cli.ok("exception", "delete", "Ceo@EXAMPLE.com").strip() == (
        "deleted exception email ceo@example.com"
    )
    assert cli.jsonl("exception", "list") == []


def test_the_exception_table_shows_long_values_whole(cli: Cli) -> None:
    """An admin copies a value from the table into ``exception delete``: it is never cut."""
    url = "https://files.example/" + "/".join(f"folder-{i}" for i in range(12)) + "/report.pdf"
    digest = "ab" * 32
    cli.ok("exception", "add", url, "--note", "the shared drive")
    cli.ok("exception", "add", digest, "--note", "a known-good installer")
    rows = table(cli.ok("exception", "list"))
    assert rows[1:] == [
        ["sha256", digest, "a known-good installer"],
        ["url", url, "the shared drive"],
    ]
    assert "…" not in cli.ok("exception", "list")
    cli.ok("exception", "delete", rows[2][1])  # copied from the table
    assert [e["value"] for e in cli.jsonl("exception", "list")] == [digest]


def test_the_rule_table_shows_long_names_whole(cli: Cli) -> None:
    name = "quarantine-everything-the-partner-feed-lists-" + "x" * 19
    assert len(name) == 64
    cli.ok("rule", "add", name, "--action", "quarantine")
    assert table(cli.ok("rule", "list"))[2][1] == name
    cli.ok("rule", "disable", name)  # copied from the table, it names the rule


def test_hits_table_and_json(sources: Cli) -> None:
    cli = sources
    assert cli.ok("hits").startswith("no hits since ")
    _feeds, policy = cli.stores()
    fill_match_log(policy, datetime.now(UTC))
    week = json.loads(cli.ok("hits", "--format", "json"))
    assert [(s["source"], s["hits"], s["messages"]) for s in week["sources"]] == [
        ("otx", 3, 2),
        ("partner", 1, 1),
    ]
    assert [(t["source"], t["value"], t["hits"]) for t in week["top"]] == [
        ("otx", "evil.example", 2),
        ("otx", "https://bad.example/x", 1),
        ("partner", "198.51.100.7", 1),
    ]
    everything = json.loads(cli.ok("hits", "--since", "all", "--format", "json"))
    assert everything["sources"][0]["hits"] == 4 and everything["top"][0]["hits"] == 3
    recent = json.loads(cli.ok("hits", "--since", "2h", "--source", "otx", "--top", "1",
                               "--format", "json"))  # fmt: skip
    assert [(s["source"], s["hits"]) for s in recent["sources"]] == [("otx", 2)]
    assert [t["value"] for t in recent["top"]] == ["evil.example"]
    lines = cli.ok("hits", "--since", "1w").splitlines()
    assert lines[0].startswith("hits since ")
    assert table("\n".join(lines[1:4]))[:3] == [
        ["SOURCE", "MODE", "HITS", "MESSAGES", "LAST"],
        ["otx", "enforce", "3", "2", table(lines[2])[0][4]],
        ["partner", "enforce", "1", "1", table(lines[3])[0][4]],
    ]
    assert "top 3 observables:" in lines
    assert table(lines[-1])[0][0] == "1" and table(lines[-1])[0][-1] == "198.51.100.7"


def test_hits_refuses_a_bad_duration_with_the_source_options_words(sources: Cli) -> None:
    line = sources.error("hits", "--since", "7 days")
    assert line.startswith("since (--since): '7 days' is not a duration: give a number and a unit")
    for top, shown in (("-1", "'-1'"), ("5000", "'5000'"), ("ten", "'ten'")):
        assert sources.error("hits", "--top", top) == (
            f"top (--top): {shown} cannot be used: give a whole number from 0 to 1000"
        )  # the library's limit and words, as GET /api/v1/hits?top= says them
    assert sources.ok("hits", "--top", "1000").startswith("no hits")


def test_db_option_on_the_group_and_the_command(tmp_path: Path, cli: Cli) -> None:
    other = str(tmp_path / "other.db")
    cli.ok("rule", "add", "only-here", "--action", "log", "--db", other)
    assert [r["name"] for r in cli.jsonl("rule", "--db", other, "list")] == [
        "threat-feeds",
        "only-here",
    ]
    assert not cli.db.exists()


def test_source_fp_gate_option(cli: Cli) -> None:
    cli.ok("source", "add", "otx", "--hostname", "otx.example", "--poll-path", "/taxii/poll",
           "--collection", "c", "--no-fp-gate")  # fmt: skip

    def shown() -> str:
        lines = cli.ok("source", "show", "otx").splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("fp_gate"))

    assert shown() == "no"
    cli.ok("source", "edit", "otx", "--fp-gate")
    assert shown() == "yes"
    feeds, _policy = cli.stores()
    source = feeds.get_source("otx")
    assert source is not None and source.fp_gate is True
    feeds.close()

"""feedgate.mail.policy.evaluate: actions and their severity, every matching rule reported,
disabled rules, the parts/sources/kinds filters, exceptions (each kind), the false-positive gate
and its per-source switch, and the JSON shape of ``feedgate scan --json``. Matches are built
directly: the policy needs no matcher."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest

from feedgate.mail.exceptions import ExceptionList, parse_exception
from feedgate.mail.model import ACTION_SEVERITY, Action, Inspection, Lookup, Match, Offer, Part
from feedgate.mail.model import Skipped as SkippedPart
from feedgate.mail.policy import HEADER_NAME, Policy, Verdict, evaluate, would_have_summary
from feedgate.mail.rules import DEFAULT_SUBJECT_PREFIX, make_rule


def match(
    part: Part = Part.URL,
    kind: str = "domain",
    value: str = "evil.example",
    seen: str | None = None,
    source: str = "otx",
    observable_id: int = 1,
    **context: Any,
) -> Match:
    return Match(part, kind, value, seen or value, source, observable_id, context)


def rule(name: str, action: str, position: int, **kwargs: Any) -> Any:
    return make_rule(name, action=action, position=position, **kwargs)


def policy(*rules: Any, exceptions: Sequence[tuple[str, str]] = ()) -> Policy:
    return Policy(tuple(rules), ExceptionList(parse_exception(v, n) for v, n in exceptions))


def run(
    matches: Sequence[Match],
    pol: Policy,
    offers: Sequence[Offer] = (),
    **kwargs: Any,
) -> Verdict:
    return evaluate(
        matches, Inspection(tuple(offers), message_id="<m1@example.net>"), pol, **kwargs
    )


# --- actions ----------------------------------------------------------------------------


def test_no_match_delivers() -> None:
    verdict = run([], policy(rule("all", "quarantine", 1)))
    assert (verdict.action, verdict.rules, verdict.matches) == (Action.DELIVER, (), ())


@pytest.mark.parametrize("action", ["reject", "drop", "quarantine", "tag", "header", "log"])
def test_each_action(action: str) -> None:
    verdict = run([match()], policy(rule("r", action, 1)))
    assert verdict.action == Action(action)
    assert verdict.rules == ("r",)
    assert (verdict.subject_prefix is not None) is (action == "tag")
    assert (verdict.header is not None) is (action == "header")
    assert (verdict.smtp_reply is not None) is (action == "reject")


def test_the_most_severe_action_wins_and_every_matching_rule_is_reported() -> None:
    order = ["log", "header", "tag", "quarantine", "drop", "reject"]
    for top in range(len(order)):
        actions = order[: top + 1]
        rules = [rule(f"r-{a}", a, i) for i, a in enumerate(reversed(actions), start=1)]
        verdict = run([match()], policy(*rules))
        assert verdict.action == Action(actions[-1]), actions
        assert verdict.rules == tuple(r.name for r in rules)
    severities = [ACTION_SEVERITY[Action(a)] for a in order]
    assert severities == sorted(severities)
    assert ACTION_SEVERITY[Action.TAG] == ACTION_SEVERITY[Action.HEADER]


def test_tag_and_header_both_apply() -> None:
    verdict = run(
        [match()],
        policy(rule("h", "header", 1), rule("t", "tag", 2, subject_prefix="[SUSPECT]")),
    )
    assert verdict.action == Action.HEADER  # the first of equals names it
    assert verdict.subject_prefix == "[SUSPECT]"
    assert verdict.header == "otx domain evil.example"
    assert HEADER_NAME == "X-Feedgate-Threat"


def test_a_more_severe_action_does_not_tag() -> None:
    verdict = run([match()], policy(rule("t", "tag", 1), rule("q", "quarantine", 2)))
    assert verdict.action == Action.QUARANTINE
    assert verdict.subject_prefix is None and verdict.header is None


def test_default_subject_prefix() -> None:
    assert run([match()], policy(rule("t", "tag", 1))).subject_prefix == DEFAULT_SUBJECT_PREFIX
    assert DEFAULT_SUBJECT_PREFIX == "[THREAT]"


def test_header_names_source_and_observable_of_what_header_rules_matched() -> None:
    matches = [
        match(kind="domain", value="evil.example", source="otx"),
        match(kind="url", value="http://evil.example/x", source="partner", observable_id=2),
        match(kind="domain", value="evil.example", source="otx", part=Part.FROM),  # once
    ]
    verdict = run(matches, policy(rule("h", "header", 1)))
    assert verdict.header == "otx domain evil.example; partner url http://evil.example/x"


def test_reject_reply_names_source_and_kind_and_no_value() -> None:
    matches = [
        match(kind="url", value="http://secret-indicator.example/x", source="partner"),
        match(kind="domain", value="secret-indicator.example", source="partner"),
        match(kind="ipv4", value="198.51.100.7", source="otx", part=Part.CLIENT_IP),
    ]
    verdict = run(matches, policy(rule("r", "reject", 1)))
    assert verdict.smtp_reply == (
        "550 5.7.1 Message refused: a URL and a domain listed by threat feed partner; the"
        " sending server's IP address listed by threat feed otx"
    )
    assert "secret-indicator" not in (verdict.smtp_reply or "")
    assert "198.51.100.7" not in (verdict.smtp_reply or "")


def test_disabled_rules_never_match() -> None:
    pol = policy(rule("off", "reject", 1, enabled=False), rule("on", "log", 2))
    verdict = run([match()], pol)
    assert (verdict.action, verdict.rules) == (Action.LOG, ("on",))
    only_off = run([match()], policy(rule("off", "reject", 1, enabled=False)))
    assert (only_off.action, only_off.rules) == (Action.DELIVER, ())


# --- filters ----------------------------------------------------------------------------


def test_parts_filter() -> None:
    pol = policy(rule("ip", "reject", 1, parts=["client-ip"]), rule("rest", "log", 2))
    assert run([match(part=Part.URL)], pol).action == Action.LOG
    hit = run([match(part=Part.CLIENT_IP, kind="ipv4", value="198.51.100.7")], pol)
    assert (hit.action, hit.rules) == (Action.REJECT, ("ip", "rest"))


def test_sources_filter() -> None:
    pol = policy(rule("partner", "drop", 1, sources=["partner"]))
    assert run([match(source="otx")], pol).action == Action.DELIVER
    assert run([match(source="partner")], pol).action == Action.DROP


def test_kinds_filter() -> None:
    pol = policy(rule("hashes", "reject", 1, kinds=["sha256", "md5"]))
    assert run([match(kind="domain")], pol).action == Action.DELIVER
    digest = hashlib.sha256(b"malware").hexdigest()
    assert run([match(part=Part.ATTACHMENT, kind="sha256", value=digest)], pol).action == (
        Action.REJECT
    )


def test_all_filters_must_hold_and_per_match_rules_are_kept() -> None:
    pol = policy(
        rule("narrow", "reject", 1, parts=["url"], sources=["otx"], kinds=["url"]),
        rule("wide", "tag", 2),
    )
    matches = [
        match(kind="url", value="http://evil.example/", source="partner"),  # wrong source
        match(kind="url", value="http://evil.example/", source="otx", observable_id=2),
    ]
    verdict = run(matches, pol)
    assert verdict.action == Action.REJECT
    assert verdict.match_rules == (("wide",), ("narrow", "wide"))
    assert verdict.smtp_reply is not None and "otx" in verdict.smtp_reply
    assert "partner" not in verdict.smtp_reply


# --- exceptions -------------------------------------------------------------------------


def offer(part: Part, lookup: Lookup, value: str, seen: str | None = None) -> Offer:
    return Offer(part, lookup, value, seen or value)


def test_domain_exception_covers_subdomains_not_siblings() -> None:
    pol = policy(rule("q", "quarantine", 1), exceptions=[("example.com", "our own domain")])
    sub = match(kind="domain", value="mail.example.com")
    verdict = run([sub], pol, [offer(Part.URL, Lookup.DOMAIN, "mail.example.com")])
    assert verdict.action == Action.DELIVER
    assert [(e.match, e.exception) for e in verdict.excepted] == [(sub, "example.com")]
    sibling = match(kind="domain", value="notexample.com")
    verdict = run([sibling], pol, [offer(Part.URL, Lookup.DOMAIN, "notexample.com")])
    assert verdict.action == Action.QUARANTINE and verdict.excepted == ()


def test_the_offer_is_excepted_whatever_the_feed_lists() -> None:
    """The feed lists the parent (example.com); the message offered a host under an exception:
    the exception wins."""
    pol = policy(rule("q", "quarantine", 1), exceptions=[("partner.example.com", "partner")])
    listed = match(kind="domain", value="example.com", seen="www.partner.example.com")
    offers = [offer(Part.URL, Lookup.DOMAIN, "www.partner.example.com")]
    verdict = run([listed], pol, offers)
    assert verdict.action == Action.DELIVER
    assert verdict.excepted[0].exception == "partner.example.com"


def test_network_exception_covers_addresses_and_inner_networks() -> None:
    pol = policy(rule("q", "quarantine", 1), exceptions=[("198.51.100.0/24", "partner relays")])
    address = match(part=Part.CLIENT_IP, kind="ipv4", value="198.51.100.25")
    network = match(part=Part.CLIENT_IP, kind="cidr", value="198.51.100.0/28", seen="198.51.100.3")
    outside = match(part=Part.CLIENT_IP, kind="ipv4", value="198.51.101.1", observable_id=3)
    offers = [
        offer(Part.CLIENT_IP, Lookup.IP, "198.51.100.25"),
        offer(Part.CLIENT_IP, Lookup.IP, "198.51.100.3"),
        offer(Part.CLIENT_IP, Lookup.IP, "198.51.101.1"),
    ]
    verdict = run([address, network, outside], pol, offers)
    assert [e.match for e in verdict.excepted] == [address, network]
    assert {e.exception for e in verdict.excepted} == {"198.51.100.0/24"}
    assert verdict.matches == (outside,)


def test_address_exception() -> None:
    pol = policy(rule("q", "quarantine", 1), exceptions=[("2001:DB8::0:1", "v6 relay")])
    hit = match(part=Part.CLIENT_IP, kind="ipv6", value="2001:db8::1")
    verdict = run([hit], pol, [offer(Part.CLIENT_IP, Lookup.IP, "2001:db8::1")])
    assert verdict.excepted[0].exception == "2001:db8::1"


def test_email_exception_is_case_insensitive() -> None:
    pol = policy(rule("q", "quarantine", 1), exceptions=[("CEO@Example.ORG", "the boss")])
    hit = match(part=Part.FROM, kind="email", value="ceo@example.org", seen="Ceo@EXAMPLE.org")
    verdict = run(
        [hit], pol, [offer(Part.FROM, Lookup.EMAIL, "Ceo@example.org", "Ceo@EXAMPLE.org")]
    )
    assert verdict.action == Action.DELIVER
    assert verdict.excepted[0].exception == "ceo@example.org"  # one exception, lower-cased
    other = match(part=Part.FROM, kind="email", value="cfo@example.org")
    assert run([other], pol).action == Action.QUARANTINE


def test_url_exception_is_exact() -> None:
    pol = policy(
        rule("q", "quarantine", 1), exceptions=[("HTTPS://Portal.Example.net/login", "SSO")]
    )
    exact = match(kind="url", value="https://portal.example.net/login")
    other = match(kind="url", value="https://portal.example.net/login2", observable_id=2)
    verdict = run([exact, other], pol)
    assert [e.match for e in verdict.excepted] == [exact]
    assert verdict.excepted[0].exception == "https://portal.example.net/login"
    assert verdict.matches == (other,)


def test_domain_exception_covers_urls_and_addresses_on_it() -> None:
    pol = policy(rule("q", "quarantine", 1), exceptions=[("example.net", "ours")])
    url = match(kind="url", value="https://a.example.net/x")
    mail = match(part=Part.FROM, kind="email", value="bob@b.example.net", observable_id=2)
    assert len(run([url, mail], pol).excepted) == 2


def test_hash_exception() -> None:
    digest = hashlib.sha1(b"our installer").hexdigest()
    pol = policy(rule("q", "quarantine", 1), exceptions=[(digest.upper(), "signed installer")])
    hit = match(part=Part.ATTACHMENT, kind="sha1", value=digest)
    verdict = run([hit], pol, [offer(Part.ATTACHMENT, Lookup.SHA1, digest)])
    assert verdict.excepted[0].exception == digest
    assert verdict.action == Action.DELIVER


# --- the false-positive gate ------------------------------------------------------------


def test_gate_suppresses_with_a_reason_and_nothing_is_enforced() -> None:
    popular = match(kind="domain", value="google.com")
    empty = match(part=Part.ATTACHMENT, kind="md5", value=hashlib.md5(b"").hexdigest())
    verdict = run([popular, empty], policy(rule("q", "reject", 1)))
    assert verdict.action == Action.DELIVER
    assert [(s.match, s.reason) for s in verdict.suppressed] == [
        (popular, "popular domain (Tranco top 10k)"),
        (empty, "empty-file hash"),
    ]


def test_gate_off_for_a_source_enforces_its_observables() -> None:
    pol = policy(rule("q", "quarantine", 1))
    trusted = match(kind="domain", value="google.com", source="internal")
    other = match(kind="domain", value="google.com", source="otx", observable_id=2)
    verdict = run([trusted, other], pol, fp_gates={"internal": False, "otx": True})
    assert verdict.action == Action.QUARANTINE
    assert verdict.matches == (trusted,)
    assert [s.match for s in verdict.suppressed] == [other]


def test_an_exception_wins_over_the_gate() -> None:
    pol = policy(rule("q", "quarantine", 1), exceptions=[("google.com", "we use it")])
    verdict = run([match(kind="domain", value="google.com")], pol)
    assert (len(verdict.excepted), verdict.suppressed) == (1, ())


# --- the JSON of feedgate scan --json -----------------------------------------------------


def test_to_dict_is_the_scan_json_shape() -> None:
    enforced = match(kind="domain", value="evil.example", package_title="Phish kit")
    suppressed = match(kind="domain", value="google.com", observable_id=2)
    excepted = match(kind="domain", value="mail.example.com", observable_id=3)
    inspection = Inspection(
        (offer(Part.URL, Lookup.DOMAIN, "mail.example.com"),),
        skipped=(SkippedPart("attachment big.zip", "larger than 10 MB"),),
        message_id="<m1@example.net>",
    )
    pol = policy(rule("q", "quarantine", 1), exceptions=[("example.com", "ours")])
    data = evaluate([enforced, suppressed, excepted], inspection, pol).to_dict()
    assert list(data) == [
        "message",
        "action",
        "rules",
        "matches",
        "suppressed",
        "excepted",
        "skipped",
        "monitored",  # feeds_0007: matches of monitor-mode sources (none here)
    ]
    assert data["message"] == "<m1@example.net>"
    assert data["action"] == "quarantine"
    assert data["rules"] == ["q"]
    assert data["matches"] == [enforced.to_dict()]
    assert data["matches"][0]["context"] == {"package_title": "Phish kit"}
    assert data["suppressed"] == [
        {**suppressed.to_dict(), "reason": "popular domain (Tranco top 10k)"}
    ]
    assert data["excepted"] == [{**excepted.to_dict(), "exception": "example.com"}]
    assert data["skipped"] == [{"what": "attachment big.zip", "reason": "larger than 10 MB"}]


# --- monitor mode: what would have been done ----------------------------------------------


def test_would_have_names_each_monitored_match_its_rules_and_action() -> None:
    pol = policy(
        rule("urls", "tag", 1, parts=["url"]),
        rule("partner-ips", "reject", 2, sources=["partner"], parts=["client-ip"]),
        rule("otx-all", "quarantine", 3, sources=["otx"]),
    )
    url = match(source="otx")
    ip = match(Part.CLIENT_IP, "ipv4", "198.51.100.7", source="partner", observable_id=2)
    nothing = match(Part.FROM, "domain", "x.example", source="partner", observable_id=3)
    verdict = run([url, ip, nothing], pol, modes={"otx": "monitor", "partner": "monitor"})
    assert verdict.action == Action.DELIVER and verdict.matches == ()
    assert [(w.match.value, w.rules, w.action) for w in verdict.would_have()] == [
        ("evil.example", ("otx-all", "urls"), Action.QUARANTINE),  # the most severe first
        ("198.51.100.7", ("partner-ips",), Action.REJECT),
        ("x.example", (), Action.DELIVER),  # no rule applies: it would have done nothing
    ]
    assert verdict.to_dict()["monitored"][0]["action"] == "quarantine"
    assert would_have_summary(verdict) == (
        "quarantine [otx-all] (source otx, monitor mode);"
        " reject [partner-ips] (source partner, monitor mode)"
    )
    only_nothing = run([nothing], pol, modes={"partner": "monitor"})
    assert would_have_summary(only_nothing) == (
        "deliver (no rule applies) (source partner, monitor mode)"
    )
    assert would_have_summary(run([url], pol)) is None  # enforced: nothing "would have"

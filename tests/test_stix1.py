"""The STIX 1.x reader on real samples (tests/data/stix1) and on constructs built here."""

from __future__ import annotations

import pytest

from feedgate.observables import Kind
from feedgate.stix import ReadStats, read_observables
from stix_helpers import (
    DATA,
    address,
    domain,
    indicator,
    obs,
    package,
    pairs,
    read,
)

STIX1 = DATA / "stix1"


def read_sample(name: str) -> tuple[list[tuple[str, str]], ReadStats]:
    stats = ReadStats()
    found = list(read_observables(STIX1 / name, stats=stats))
    return pairs(found), stats


# --- real samples -----------------------------------------------------------------------------

SAMPLES: dict[str, list[tuple[str, str]]] = {
    "stixschemas-1.1.1_STIX_IP_Watchlist.xml": [
        ("ipv4", "10.0.0.0"),
        ("ipv4", "10.0.0.1"),
        ("ipv4", "10.0.0.2"),
    ],
    "stixschemas-1.1.1_STIX_Domain_Watchlist.xml": [
        ("domain", "malicious1.example.com"),
        ("domain", "malicious2.example.com"),
        ("domain", "malicious3.example.com"),
    ],
    "stixschemas-1.1.1_STIX_URL_Watchlist.xml": [
        ("url", "http://example.com/foo/malicious1.html"),
        ("url", "http://example.com/foo/malicious2.html"),
        ("url", "http://example.com/foo/malicious3.html"),
    ],
    "minemeld_test_ft_taxii_stix_package_IPv4_3_2.xml": [
        ("ipv4", "10.0.0.0"),
        ("ipv4", "10.0.0.1"),
        ("ipv4", "10.0.0.2"),
    ],
    "minemeld_test_ft_taxii_stix_package_IPv6_3_2.xml": [
        ("ipv6", "2607:f8b0:4004:803::1015"),
        ("ipv6", "2607:f8b0:4004:803::1016"),
        ("ipv6", "2607:f8b0:4004:803::1017"),
    ],
    "cbtaxii_simple_ipv6_watchlist.xml": [
        ("ipv6", "2001:db8:85a3::8a2e:370:7334"),
        ("ipv6", "2001:db8:85a3::8a2e:370:7335"),
        ("ipv6", "2001:db8:85a3::8a2e:370:7336"),
        ("ipv6", "2001:db8:85a3::8a2e:371:7334"),
    ],
    "cbtaxii_hat_dns_example.xml": [
        ("domain", "fctnnbsc38w-47-54-126-15.dhcp-dynamic.fibreop.nb.bellaliant.net"),
    ],
    "stixproject-idiom_indicator-for-malicious-url.xml": [("url", "http://x4z9arb.cn/4712")],
    "stixproject-analyst-exercise_output.xml": [
        ("other", "IEEE Aerospace Conference 2014"),
        ("email", "invite@aeroconf2014.org"),
        ("domain", "yahoomail.com.co"),
        ("ipv4", "81.17.28.227"),
        ("md5", "6dc7cc33a3cdcfee6c4edb6c085b869d"),
        ("ipv4", "81.17.28.227"),
    ],
    "cbtaxii_cybox_hash_watchlist.xml": [
        ("md5", "5cdb49b2869f49ae956ae78f0b14a8b4"),
        ("md5", "5cdb49b2869f49ae956ae7abcb14a8b4"),
        ("md5", "5cdb49b2869f49ae956ae7abcb14a8b5"),
        ("md5", "5cdb49b2869f49ae956ae7abcb14a8b6"),
        ("sha256", "ecebd25a39aaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
    ],
    # MISP nests events as Related_Packages and indicators inside incidents' Related_Indicators.
    "misp-stix_test_event2_stix11.xml": [
        ("domain", "circl.lu"),
        ("ipv4", "149.13.33.14"),
        ("other", "test_file_name"),
    ],
    "stix-validator_schema_invalid.xml": [
        ("domain", "malicious1.example.com"),
        ("domain", "malicious2.example.com"),
        ("domain", "malicious3.example.com"),
    ],
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_real_samples_yield_exactly_their_values(name: str) -> None:
    found, _ = read_sample(name)
    assert found == SAMPLES[name]


def test_every_stix1_sample_reads_without_error() -> None:
    names = sorted(p.name for p in STIX1.glob("*.xml"))
    assert len(names) >= 30
    for name in names:
        read_sample(name)  # must not raise


def test_only_patterns_are_skipped_not_emitted() -> None:
    # stuxnet (OpenIOC conversion): every property is a Contains pattern.
    found, stats = read_sample("opentaxii_stuxnet.stix.xml")
    assert found == []
    assert stats.skipped["pattern, not a value (condition Contains)"] == 17
    found, stats = read_sample("stixproject-idiom_malicious-email-indicator-with-attachment.xml")
    assert found == []
    # the attachment is both referenced and related: read (and skipped) once
    assert stats.skipped["pattern, not a value (condition StartsWith)"] == 4


def test_package_observables_that_only_a_ttp_refers_to_are_not_indicators() -> None:
    # The idiom lists C2 addresses as a TTP's infrastructure: context, not indicators.
    found, stats = read_sample("stixproject-idiom_command-and-control-ip-list.xml")
    assert found == []
    assert stats.skipped["observable of an incident, TTP or other context, not an indicator"] == 3


def test_snort_only_indicator_yields_nothing() -> None:
    found, stats = read_sample("stixproject-idiom_snort-test-mechanism.xml")
    assert found == [] and stats.indicators == 1


def test_unresolved_idref_is_counted() -> None:
    found, stats = read_sample("stixschemas-1.1.1_Phishing_Indicator_Observables_by_Reference.xml")
    assert found == []
    assert stats.skipped["idref to an observable not in the package"] == 1


def test_md5_of_invalid_length_is_skipped_with_reason() -> None:
    found, stats = read_sample("stixschemas-1.1.1_STIX_FileHash_Watchlist.xml")
    assert found == [
        ("md5", "abcdef1234567890abcdef1234567890"),
        ("md5", "00112233445566778899aabbccddeeff"),
    ]
    assert stats.skipped["invalid md5 value"] == 1


def test_context_carries_package_and_indicator() -> None:
    stats = ReadStats()
    found = list(read_observables(STIX1 / "stix-validator_all_valid.xml", stats=stats))
    assert len(found) == 1
    ctx = found[0].context
    assert ctx["indicator_title"] == "Sample Domain Watchlist Indicator"
    assert ctx["indicator_id"]
    assert ctx["package_id"]
    assert "valid_from" in ctx
    assert "confidence" in ctx


# --- constructs -------------------------------------------------------------------------------


def test_observable_composition_at_any_depth() -> None:
    inner = (
        '<cybox:Observable_Composition operator="OR">'
        + obs(address("192.0.2.1"), tag="cybox:Observable")
        + '<cybox:Observable><cybox:Observable_Composition operator="AND">'
        + obs(domain("deep.example"), tag="cybox:Observable")
        + obs(address("192.0.2.2"), tag="cybox:Observable")
        + "</cybox:Observable_Composition></cybox:Observable>"
        + "</cybox:Observable_Composition>"
    )
    ind = indicator("<indicator:Observable>" + inner + "</indicator:Observable>")
    found, _ = read(package(f"<stix:Indicators>{ind}</stix:Indicators>"))
    assert pairs(found) == [
        ("ipv4", "192.0.2.1"),
        ("domain", "deep.example"),
        ("ipv4", "192.0.2.2"),
    ]
    assert found[0].context["composition"] == "OR"
    assert found[1].context["composition"] == "AND"


def test_idref_to_package_level_observable_is_read_once_with_indicator_context() -> None:
    body = (
        "<stix:Observables>"
        + obs(address("198.51.100.7"), obs_id="ex:obs-1", tag="cybox:Observable")
        + obs(domain("standalone.example"), obs_id="ex:obs-2", tag="cybox:Observable")
        + "</stix:Observables><stix:Indicators>"
        + indicator('<indicator:Observable idref="ex:obs-1"/>', title="by reference")
        + "</stix:Indicators>"
    )
    found, _ = read(package(body))
    assert pairs(found) == [("ipv4", "198.51.100.7"), ("domain", "standalone.example")]
    assert found[0].context["indicator_title"] == "by reference"
    assert "indicator_title" not in found[1].context
    assert found[1].context["package_title"] == "Test pulse"


def test_observables_of_incidents_only_are_not_indicators() -> None:
    body = (
        "<stix:Incidents><stix:Incident "
        'xsi:type="incident:IncidentType" id="ex:incident-1">'
        "<incident:Related_Observables><incident:Related_Observable>"
        + obs(address("203.0.113.9"), tag="stixCommon:Observable")
        + "</incident:Related_Observable></incident:Related_Observables>"
        + "</stix:Incident></stix:Incidents>"
    )
    found, _ = read(package(body))
    assert found == []


def test_negated_observable_is_skipped() -> None:
    negated = (
        '<indicator:Observable negate="true"><cybox:Object>'
        + address("192.0.2.50")
        + "</cybox:Object></indicator:Observable>"
    )
    found, stats = read(package(f"<stix:Indicators>{indicator(negated)}</stix:Indicators>"))
    assert found == []
    assert sum(stats.skipped.values()) == 1


@pytest.mark.parametrize(
    ("value", "attrs", "expected"),
    [
        ("192.0.2.0##comma##192.0.2.255", {"condition": "InclusiveBetween"}, ["192.0.2.0/24"]),
        # OTX's own exporter joins the bounds with a plain comma.
        ("192.0.2.0,192.0.2.127", {"condition": "InclusiveBetween"}, ["192.0.2.0/25"]),
        ("192.0.2.0,192.0.2.2", {"condition": "InclusiveBetween"}, ["192.0.2.0/31", "192.0.2.2"]),
        (
            "192.0.2.1##comma##192.0.2.2",
            {"condition": "Equals", "apply_condition": "ANY"},
            ["192.0.2.1", "192.0.2.2"],
        ),
        ("198.51.100.0/24", {}, ["198.51.100.0/24"]),
    ],
)
def test_address_ranges_lists_and_cidr(
    value: str, attrs: dict[str, str], expected: list[str]
) -> None:
    found, _ = read(
        package(f"<stix:Indicators>{indicator(obs(address(value, **attrs)))}</stix:Indicators>")
    )
    assert [o.value for o in found] == expected


@pytest.mark.parametrize(
    "condition",
    [
        "Contains",
        "StartsWith",
        "EndsWith",
        "FitsPattern",
        "DoesNotContain",
        "DoesNotEqual",
        "GreaterThan",
    ],
)
def test_non_exact_conditions_are_patterns(condition: str) -> None:
    found, stats = read(
        package(
            f"<stix:Indicators>{indicator(obs(domain('evil.example', condition=condition)))}"
            "</stix:Indicators>"
        )
    )
    assert found == []
    assert stats.skipped[f"pattern, not a value (condition {condition})"] == 1


def test_unknown_conditions_and_apply_condition_none_are_patterns_too() -> None:
    body = "".join(
        indicator(obs(domain(f"evil{i}.example", condition=f"Weird\n{i}")), ind_id=f"ex:i{i}")
        for i in range(50)
    ) + indicator(
        obs(domain("a.example##comma##b.example", condition="Equals", apply_condition="NONE")),
        ind_id="ex:none",
    )
    found, stats = read(package(f"<stix:Indicators>{body}</stix:Indicators>"))
    assert found == []
    # one reason for all unknown conditions: feed text never becomes a counter key
    assert stats.skipped == {
        "pattern, not a value (unknown condition)": 50,
        "pattern, not a value (apply_condition NONE)": 1,
    }


def test_address_without_category_is_classified_by_value() -> None:
    values = "192.0.2.1##comma##2001:db8::1##comma##bad@example.org##comma##192.0.2.0/24"
    found, _ = read(
        package(
            f"<stix:Indicators>{indicator(obs(address(values, category=None)))}</stix:Indicators>"
        )
    )
    assert pairs(found) == [
        ("ipv4", "192.0.2.1"),
        ("ipv6", "2001:db8::1"),
        ("email", "bad@example.org"),
        ("cidr", "192.0.2.0/24"),
    ]


def test_hostname_uri_link_file_email_and_mutex_objects() -> None:
    objects = [
        '<cybox:Properties xsi:type="HostnameObj:HostnameObjectType">'
        "<HostnameObj:Hostname_Value>Host.Example.</HostnameObj:Hostname_Value></cybox:Properties>",
        '<cybox:Properties xsi:type="URIObj:URIObjectType" type="URL">'
        "<URIObj:Value>HTTP://Evil.Example:80/a</URIObj:Value></cybox:Properties>",
        '<cybox:Properties xsi:type="LinkObj:LinkObjectType" type="URL">'
        "<URIObj:Value>https://link.example/x</URIObj:Value></cybox:Properties>",
        '<cybox:Properties xsi:type="FileObj:FileObjectType"><FileObj:Hashes><cyboxCommon:Hash>'
        "<cyboxCommon:Type>SHA1</cyboxCommon:Type><cyboxCommon:Simple_Hash_Value>"
        "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709</cyboxCommon:Simple_Hash_Value>"
        "</cyboxCommon:Hash></FileObj:Hashes></cybox:Properties>",
        '<cybox:Properties xsi:type="MutexObj:MutexObjectType">'
        "<MutexObj:Name>Global\\evil</MutexObj:Name></cybox:Properties>",
    ]
    body = "".join(indicator(obs(p), ind_id=f"ex:indicator-{i}") for i, p in enumerate(objects))
    found, _ = read(package(f"<stix:Indicators>{body}</stix:Indicators>"))
    assert pairs(found) == [
        ("domain", "host.example"),
        ("url", "http://evil.example/a"),
        ("url", "https://link.example/x"),
        ("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("other", "Global\\evil"),
    ]
    assert found[-1].original_type == "MutexObjectType"


def test_email_message_senders_and_linked_urls_but_not_recipients() -> None:
    email = (
        '<cybox:Properties xsi:type="EmailMessageObj:EmailMessageObjectType">'
        "<EmailMessageObj:Header>"
        '<EmailMessageObj:To><EmailMessageObj:Recipient category="e-mail">'
        "<AddressObj:Address_Value>victim@example.net</AddressObj:Address_Value>"
        "</EmailMessageObj:Recipient></EmailMessageObj:To>"
        '<EmailMessageObj:From category="e-mail">'
        "<AddressObj:Address_Value>Phisher@Evil.Example</AddressObj:Address_Value>"
        "</EmailMessageObj:From>"
        "</EmailMessageObj:Header>"
        "<EmailMessageObj:Links>"
        '<EmailMessageObj:Link object_reference="ex:link-1"/>'
        "</EmailMessageObj:Links></cybox:Properties>"
    )
    link = (
        '<cybox:Observable><cybox:Object id="ex:link-1">'
        '<cybox:Properties xsi:type="LinkObj:LinkObjectType" type="URL">'
        "<URIObj:Value>http://phish.example/login</URIObj:Value></cybox:Properties>"
        "</cybox:Object></cybox:Observable>"
    )
    body = (
        f"<stix:Observables>{link}</stix:Observables>"
        f"<stix:Indicators>{indicator(obs(email))}</stix:Indicators>"
    )
    found, _ = read(package(body))
    assert ("email", "Phisher@evil.example") in pairs(found)
    assert ("url", "http://phish.example/login") in pairs(found)
    assert all("victim" not in o.value for o in found)


def test_defanged_values_are_refanged() -> None:
    found, _ = read(
        package(f"<stix:Indicators>{indicator(obs(domain('evil[.]example')))}</stix:Indicators>")
    )
    assert pairs(found) == [("domain", "evil.example")]


# --- input shapes -----------------------------------------------------------------------------


def poll_response(*contents: str, text: bool = False) -> str:
    blocks = "".join(
        "<taxii_11:Content_Block>"
        '<taxii_11:Content_Binding binding_id="urn:stix.mitre.org:xml:1.1.1"/>'
        f"<taxii_11:Content>{c}</taxii_11:Content>"
        "<taxii_11:Timestamp_Label>2026-11-01T00:00:00Z</taxii_11:Timestamp_Label>"
        "</taxii_11:Content_Block>"
        for c in contents
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        "<taxii_11:Poll_Response xmlns:taxii_11="
        '"http://taxii.mitre.org/messages/taxii_xml_binding-1.1" message_id="1" '
        'in_response_to="2" collection_name="user_AlienVault" more="false">'
        f"{blocks}</taxii_11:Poll_Response>"
    )


def _pkg(i: int) -> str:
    return package(
        f"<stix:Indicators>{indicator(obs(address(f'192.0.2.{i}')), ind_id=f'ex:ind-{i}')}"
        "</stix:Indicators>",
        pkg_id=f"ex:Package-{i}",
        title=f"pulse {i}",
    )


def test_taxii_poll_response_with_xml_and_escaped_text_content() -> None:
    escaped = _pkg(2).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    found, stats = read(poll_response(_pkg(1), escaped))
    assert pairs(found) == [("ipv4", "192.0.2.1"), ("ipv4", "192.0.2.2")]
    assert stats.content_blocks == 2
    assert found[1].context["package_title"] == "pulse 2"


def test_stix2_json_inside_a_content_block() -> None:
    bundle = (
        '{"type": "bundle", "id": "bundle--1", "objects": [{"type": "indicator", '
        '"id": "indicator--1", "pattern": "[domain-name:value = &apos;evil.example&apos;]", '
        '"pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"}]}'
    )
    found, _ = read(poll_response(bundle))
    assert pairs(found) == [("domain", "evil.example")]


def test_concatenated_packages_as_taxii_poll_prints_them() -> None:
    text = "\n".join(f'<?xml version="1.0" encoding="UTF-8"?>\n{_pkg(i)}' for i in range(1, 4))
    found, stats = read(text)
    assert [o.value for o in found] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert stats.packages == 3


def test_empty_poll_response_reads_zero() -> None:
    found, stats = read(poll_response())
    assert found == [] and stats.content_blocks == 0


def test_status_message_is_reported_as_an_error() -> None:
    from feedgate.stix import TaxiiStatusError

    status = (
        "<taxii_11:Status_Message xmlns:taxii_11="
        '"http://taxii.mitre.org/messages/taxii_xml_binding-1.1" message_id="1" '
        'in_response_to="2" status_type="UNAUTHORIZED">'
        "<taxii_11:Message>bad key</taxii_11:Message></taxii_11:Status_Message>"
    )
    with pytest.raises(TaxiiStatusError, match="UNAUTHORIZED: bad key"):
        read(status)


def test_bare_cybox_observables_document() -> None:
    found, _ = read_sample("stixschemas-1.1.1_CybOX_Phishing_Pattern_observables.xml")
    assert found == [("md5", "cf2b3ad32a8a4cfb05e9dfc45875bd70")]


def test_kinds_are_kind_members() -> None:
    found, _ = read(_pkg(5))
    assert found[0].kind is Kind.IPV4


def test_reference_fan_out_reads_each_target_once() -> None:
    """A chain of compositions, each referencing the next twice, must not fan out 2**n."""
    links = 40
    chain = "".join(
        f'<cybox:Observable id="ex:o{i}"><cybox:Observable_Composition operator="OR">'
        f'<cybox:Observable idref="ex:o{i + 1}"/><cybox:Observable idref="ex:o{i + 1}"/>'
        "</cybox:Observable_Composition></cybox:Observable>"
        for i in range(links)
    ) + obs(address("192.0.2.77"), obs_id=f"ex:o{links}", tag="cybox:Observable")
    body = (
        f"<stix:Observables>{chain}</stix:Observables><stix:Indicators>"
        + indicator('<indicator:Observable idref="ex:o0"/>')
        + "</stix:Indicators>"
    )
    found, _ = read(package(body))
    assert pairs(found) == [("ipv4", "192.0.2.77")]


def test_nested_package_resolves_idrefs_of_the_outer_package() -> None:
    inner = package(
        "<stix:Indicators>"
        + indicator('<indicator:Observable idref="ex:outer-obs"/>', title="inner indicator")
        + "</stix:Indicators>",
        pkg_id="ex:inner",
        title="inner",
    ).replace("stix:STIX_Package", "stix:Package")
    body = (
        "<stix:Observables>"
        + obs(address("198.51.100.99"), obs_id="ex:outer-obs", tag="cybox:Observable")
        + "</stix:Observables><stix:Related_Packages><stix:Related_Package>"
        + inner
        + "</stix:Related_Package></stix:Related_Packages>"
    )
    found, _ = read(package(body))
    assert pairs(found) == [("ipv4", "198.51.100.99")]
    assert found[0].context["indicator_title"] == "inner indicator"
    assert found[0].context["package_title"] == "inner"


def test_package_observable_referenced_only_by_an_incident_is_not_read() -> None:
    body = (
        "<stix:Observables>"
        + obs(address("192.0.2.10"), obs_id="ex:victim", tag="cybox:Observable")
        + "</stix:Observables><stix:Incidents>"
        '<stix:Incident xsi:type="incident:IncidentType" id="ex:incident-1">'
        "<incident:Related_Observables><incident:Related_Observable>"
        '<stixCommon:Observable idref="ex:victim"/>'
        "</incident:Related_Observable></incident:Related_Observables>"
        "</stix:Incident></stix:Incidents>"
    )
    found, stats = read(package(body))
    assert found == []
    assert sum(stats.skipped.values()) == 1


def test_unreadable_text_blocks_are_skipped_and_the_rest_is_read() -> None:
    html = "&lt;html&gt;&lt;body&gt;oops&lt;/body&gt;&lt;/html&gt;"
    bad_json = '{"type": "bundle", '
    latin1 = _pkg(7).replace("pulse 7", "b\u00fccher").replace("&", "&amp;").replace("<", "&lt;")
    latin1 = '&lt;?xml version="1.0" encoding="ISO-8859-1"?&gt;' + latin1.replace(">", "&gt;")
    found, stats = read(poll_response(_pkg(1), html, bad_json, latin1, _pkg(2)))
    assert [o.value for o in found] == ["192.0.2.1", "192.0.2.7", "192.0.2.2"]
    assert found[1].context["package_title"] == "b\u00fccher"
    assert stats.skipped["unreadable text content block"] == 2


def test_utf16_input_is_read_as_what_it_says() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?>\n' + _pkg(9)
    for codec in ("utf-16", "utf-16-le", "utf-16-be"):
        found, _ = read(doc.encode(codec))
        assert pairs(found) == [("ipv4", "192.0.2.9")], codec


def test_a_long_comment_before_the_root_is_fine() -> None:
    found, _ = read("<!-- " + "x" * 200_000 + " -->\n" + _pkg(3))
    assert pairs(found) == [("ipv4", "192.0.2.3")]


def test_undeclared_entity_error_names_it() -> None:
    from feedgate.xml import XMLParseError

    with pytest.raises(XMLParseError, match="Entity 'nbsp' not defined"):
        read(_pkg(1).replace("pulse 1", "pulse&nbsp;1"))

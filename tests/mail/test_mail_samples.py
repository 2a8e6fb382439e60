"""The inspector on real messages (tests/data/mail, see PROVENANCE.md there)."""

from __future__ import annotations

import base64
import email
import re
from email import policy
from pathlib import Path

import pytest
from mail_helpers import DATA, SAMPLES, has_hashes, hashes, skipped_text, urls, values

from feedgate.mail.inspect import inspect_file, inspect_message
from feedgate.mail.model import Inspection, Lookup, Offer, Part
from feedgate.observables import normalise_url


def test_every_sample_is_here() -> None:
    assert len(SAMPLES) == 21


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_gives_a_result(path: Path) -> None:
    result = inspect_file(path)
    assert isinstance(result, Inspection)
    assert all(isinstance(o, Offer) for o in result.offers)
    keys = [(o.part, o.lookup, o.value) for o in result.offers]
    assert len(keys) == len(set(keys)), "an offer is listed twice"
    # Each sample has at least a sender or a URL to offer (all 21 do).
    assert result.offers
    # The bytes and the path give the same inspection.
    assert inspect_message(path.read_bytes()) == result


def test_hxxp_sample_gives_the_refanged_url() -> None:
    result = inspect_file(DATA / "rspamd_url_obfuscated_hxxp.eml")
    assert urls(result) == ["http://malicious-site.com/phish"]
    assert values(result, Part.URL, Lookup.DOMAIN) == ["malicious-site.com"]
    [offer] = [o for o in result.offers if o.lookup is Lookup.URL]
    assert offer.seen == "hxxp://malicious-site.com/phish"


def test_bracket_dots_sample_gives_the_refanged_url() -> None:
    result = inspect_file(DATA / "rspamd_url_obfuscated_bracket_dots.eml")
    assert urls(result) == ["http://example.com/login"]
    assert "example.com" in values(result, Part.URL, Lookup.DOMAIN)


def test_encoded_subject_gives_its_url() -> None:
    result = inspect_file(DATA / "rspamd_urlinsubjectencoded.eml")
    assert result.subject is not None and result.subject.startswith(
        "ПОДТВЕРДИТЕ ВЫПЛАТУ - https://"
    )
    assert urls(result) == ["https://example.com/nT6a--Check"]


def test_ics_attachment_gives_its_url_and_its_hash() -> None:
    path = DATA / "rspamd_ics.eml"
    result = inspect_file(path)
    assert urls(result) == ["http://test.com/"]
    body = path.read_text()
    encoded = body.split('name="test.ics"\n\n', 1)[1].split("\n\n", 1)[0]
    assert has_hashes(result, base64.b64decode(encoded))
    assert result.message_id == "<20190126120458.015328@srv.example.com>"


def test_nested_rfc822_gives_the_inner_attachment_hash() -> None:
    result = inspect_file(DATA / "rspamd_alternative-nested-rfc822.eml")
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    assert has_hashes(result, png)
    # The inner message's text bodies are bodies, not attachments.
    assert len(values(result, Part.ATTACHMENT, Lookup.SHA256)) == 1


def test_every_attachment_of_the_samples_is_hashed() -> None:
    """Cross-check against the standard library: every non-text leaf's decoded bytes."""
    for path in SAMPLES:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        result = inspect_file(path)
        for part in message.walk():
            if part.is_multipart() or part.get_content_maintype() in ("text", "multipart"):
                continue
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            assert has_hashes(result, data), (path.name, part.get_content_type())


def test_html_phishing_sample_gives_links_and_image() -> None:
    result = inspect_file(DATA / "rspamd_html_phishing.eml")
    found = set(urls(result))
    assert "https://cdn.example.com/logo.png" in found
    assert {u for u in found if "phishing-site.evil" in u} >= {
        "https://phishing-site.evil/steal-credentials",
        "https://phishing-site.evil/fake",
    }
    assert values(result, Part.URL, Lookup.DOMAIN).count("phishing-site.evil") == 1


def test_query_nesting_gives_every_embedded_url() -> None:
    result = inspect_file(DATA / "rspamd_url_query_nesting.eml")
    hosts = values(result, Part.URL, Lookup.DOMAIN)
    assert hosts == [f"h{i}.example.org" for i in range(13)]
    assert urls(result)[-1] == "http://h12.example.org/"


def test_received_chain_without_ips_gives_no_client_ip() -> None:
    result = inspect_file(DATA / "rspamd_rcvd7.eml")  # every Received has "[]"
    assert values(result, Part.CLIENT_IP, Lookup.IP) == []
    assert values(result, Part.ENVELOPE_FROM, Lookup.EMAIL) == ["test@test.ru"]
    assert values(result, Part.FROM, Lookup.DOMAIN) == ["test.ru"]


def test_qmail_style_received_gives_the_bare_ip() -> None:
    result = inspect_file(DATA / "python_msg_15.eml")  # "from fepD.post.tele.dk (195.41.46.149)"
    assert values(result, Part.CLIENT_IP, Lookup.IP) == ["195.41.46.149"]


def test_content_url_sample_gives_url_and_pdf_hash() -> None:
    path = DATA / "rspamd_content_url.eml"
    result = inspect_file(path)
    assert urls(result) == [normalise_url("http://www.example.org")[1]]
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    [pdf] = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    data = pdf.get_payload(decode=True)
    assert isinstance(data, bytes) and data.startswith(b"%PDF")
    offered = {o.lookup: o for o in result.offers if o.part is Part.ATTACHMENT}
    assert {lookup: o.value for lookup, o in offered.items()} == hashes(data)
    assert offered[Lookup.SHA256].seen == "spam3.pdf"


def test_truncated_zip_without_transfer_encoding_is_hashed_as_sent() -> None:
    # The "zip" has no Content-Transfer-Encoding: it is the base64 text itself (7bit).
    # The newline before the closing boundary belongs to the boundary, not to the part.
    path = DATA / "rspamd_mixed-html-zip.eml"
    result = inspect_file(path)
    text = re.search(rb"\n\n(UEsDB[^\n]*)\n--", path.read_bytes())
    assert text is not None
    assert has_hashes(result, text.group(1))
    assert urls(result) == ["https://example.com/"]


def test_encoded_filename_is_the_seen_text() -> None:
    result = inspect_file(DATA / "rspamd_fname.eml")
    seen = {o.seen for o in result.offers if o.part is Part.ATTACHMENT}
    assert any("삼성생명" in s for s in seen)


def test_no_blank_line_sample_reads_its_headers() -> None:
    result = inspect_file(DATA / "python_msg_35.eml")
    assert values(result, Part.FROM, Lookup.EMAIL) == ["aperson@dom.ain"]
    assert "message" not in skipped_text(result)

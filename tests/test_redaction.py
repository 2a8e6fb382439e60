"""feedgate.redaction: the one rule for credentials in URLs, and the faces that use it agree."""

from __future__ import annotations

import pytest

from feedgate import db
from feedgate.feeds.log import redact
from feedgate.redaction import hide_url_credentials
from feedgate.taxii.client import TransportError


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("POST http://KEY:PASS@h.test/taxii failed", "POST http://***:***@h.test/taxii failed"),
        ("https://KEY@h.test:8443/p", "https://***@h.test:8443/p"),
        ("http://u:p@ss@h.test/p?x=a@b", "http://***:***@h.test/p?x=a@b"),  # the last @ ends it
        ("see http://h.test/a@b and mailto:x@y.test", "see http://h.test/a@b and mailto:x@y.test"),
        (
            "a http://A:B@one.test, b https://C:D@two.test",
            "a http://***:***@one.test, b https://***:***@two.test",
        ),
    ],
)
def test_credentials_are_masked_wherever_a_url_is(text: str, shown: str) -> None:
    assert hide_url_credentials(text) == shown


def test_a_database_keeps_its_user_name() -> None:
    url = "postgresql://feeds:s3cret@db.test:5432/feedgate"
    assert (
        hide_url_credentials(url, keep_username=True)
        == "postgresql://feeds:***@db.test:5432/feedgate"
    )
    assert db.display_name(url) == hide_url_credentials(url, keep_username=True)


def test_the_threat_feed_log_and_taxii_errors_agree() -> None:
    text = "POST https://0123456789abcdef:x@otx.test/taxii/poll failed: cannot connect"
    assert redact(text) == str(TransportError(text)) == hide_url_credentials(text)

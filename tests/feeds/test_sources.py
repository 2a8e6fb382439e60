"""feeds.sources: the Source model, validation (one field, one actionable message), durations."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import timedelta
from typing import Any

import pytest

from feedgate.feeds.sources import (
    ALL_ENFORCE,
    Source,
    SourceError,
    client_options,
    endpoint,
    format_duration,
    parse_duration,
    validate,
)
from feedgate.observables import ENFORCEABLE_KINDS
from feedgate.taxii.client import TaxiiClient


def make(**changes: Any) -> Source:
    base = Source(name="otx", hostname="otx.alienvault.com", collection="user_AlienVault")
    return dataclasses.replace(base, **changes)


def error(**changes: Any) -> SourceError:
    with pytest.raises(SourceError) as info:
        validate(make(**changes))
    return info.value


def test_defaults_follow_the_gateway_defaults() -> None:
    source = validate(make())
    assert source.port == 443 and source.use_https
    assert source.polling_interval == timedelta(minutes=60)
    assert source.age == timedelta(days=30)
    assert source.poll_segment == timedelta(days=1)
    assert source.max_retries == 3
    assert source.poll_path == "/taxii/poll"
    assert source.taxii_version == "1.1"
    assert source.enabled and source.verify_ssl
    assert source.enforce == frozenset(kind.value for kind in ENFORCEABLE_KINDS) == ALL_ENFORCE
    assert all(type(kind) is str for kind in source.enforce)


def test_source_is_frozen_with_slots() -> None:
    source = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.name = "other"  # type: ignore[misc]
    assert not hasattr(source, "__dict__")


def test_validate_normalises() -> None:
    source = validate(
        make(
            hostname=" OTX.AlienVault.COM. ",
            collection=" user_AV ",
            enforce=frozenset({"IPv4", "domain"}),
            discovery_path="",
            proxy_url="",
        )
    )
    assert source.hostname == "otx.alienvault.com"
    assert source.collection == "user_AV"
    assert source.enforce == {"ipv4", "domain"}
    assert source.discovery_path is None and source.proxy_url is None
    assert validate(make(hostname="bücher.example")).hostname == "xn--bcher-kva.example"
    assert validate(make(hostname="[2001:DB8::1]")).hostname == "2001:db8::1"
    assert validate(make(hostname="192.0.2.7")).hostname == "192.0.2.7"
    assert validate(source) == source


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"name": ""}, "name", "empty"),
        ({"name": "my feed"}, "name", "letters, digits"),
        ({"name": "-rf"}, "name", "starting with a letter"),
        ({"name": "a/b"}, "name", "'-', '_' or '.'"),
        ({"name": "x" * 65}, "name", "at most 64"),
        ({"hostname": "https://otx.alienvault.com/taxii/poll"}, "hostname", "--poll-path"),
        ({"hostname": "otx.alienvault.com/taxii"}, "hostname", "host name only"),
        ({"hostname": "otx.alienvault.com:443"}, "hostname", "--port"),
        ({"hostname": "user@otx.alienvault.com"}, "hostname", "--username"),
        ({"hostname": ""}, "hostname", "e.g. otx.alienvault.com"),
        ({"hostname": "bad_host!.example"}, "hostname", "not a host name"),
        ({"hostname": "-lead.example"}, "hostname", "not a host name"),
        ({"poll_path": "taxii/poll"}, "poll_path", "must start with '/'"),
        ({"poll_path": "/taxii poll"}, "poll_path", "no spaces"),
        ({"discovery_path": "taxii/discovery"}, "discovery_path", "--discovery-path"),
        ({"port": 0}, "port", "1 to 65535"),
        ({"port": 65536}, "port", "1 to 65535"),
        ({"polling_interval": timedelta(minutes=4)}, "polling_interval", "every 5m"),
        ({"age": timedelta(0)}, "age", "more than zero"),
        ({"age": timedelta(days=-1)}, "age", "more than zero"),
        ({"poll_segment": timedelta(0)}, "poll_segment", "more than zero"),
        ({"poll_segment": timedelta(days=31)}, "poll_segment", "longer than the age 30d"),
        ({"poll_segment": timedelta(seconds=1)}, "poll_segment", "2,592,000 requests"),
        ({"poll_segment": timedelta(minutes=4)}, "poll_segment", "at least 5m"),
        ({"max_retries": -1}, "max_retries", "0 to 10"),
        ({"max_retries": 11}, "max_retries", "0 to 10"),
        ({"taxii_version": "2.1"}, "taxii_version", "1.0 or 1.1"),
        ({"collection": "  "}, "collection", "--collection"),
        ({"enforce": frozenset({"ipv4", "mutex"})}, "enforce", "unknown kind(s) mutex"),
        ({"enforce": frozenset({"other"})}, "enforce", "choose from"),
        ({"key_file": "/k.pem"}, "key_file", "--cert"),
        ({"key_password": "x"}, "key_password", "--cert"),
        ({"password": "x"}, "password", "--username"),
        ({"proxy_url": "proxy.example:3128"}, "proxy_url", "http://host:port"),
        ({"proxy_url": "socks5://proxy.example:1080"}, "proxy_url", "http://host:port"),
        ({"proxy_url": "http://proxy.example"}, "proxy_url", "needs a host and a port"),
        ({"proxy_url": "http://proxy.example:99999"}, "proxy_url", "not a proxy URL"),
        ({"proxy_url": "http://proxy.example:3128/x"}, "proxy_url", "must not have a path"),
        ({"proxy_url": "http://u:pw@proxy.example:3128"}, "proxy_url", "credentials"),
    ],
)
def test_each_bad_field_is_named_with_a_fix(
    changes: dict[str, Any], field: str, words: str
) -> None:
    exc = error(**changes)
    assert exc.field == field
    assert words in str(exc)
    assert str(exc).startswith(f"{field}: ")
    assert isinstance(exc, ValueError)


def test_good_edge_values() -> None:
    validate(make(port=1, max_retries=0, polling_interval=timedelta(minutes=5)))
    validate(make(port=65535, max_retries=10))
    validate(make(age=timedelta(days=1), poll_segment=timedelta(days=1)))
    validate(make(cert_file="/c.pem", key_file="/k.pem", key_password="pw"))
    validate(make(username="apikey"))  # OTX: the API key as user name, no password
    validate(make(proxy_url="https://proxy.example:3128/"))
    validate(make(proxy_url="noproxy"))
    validate(make(taxii_version="1.0", enforce=frozenset()))


def test_proxy_credentials_are_not_echoed() -> None:
    assert "pw" not in str(error(proxy_url="http://u:pw@proxy.example:3128"))


def test_repr_never_shows_secrets() -> None:
    source = make(username="apikey", password="hunter2-pass", cert_file="/c", key_password="kp-42")
    for text in (repr(source), str(source), f"{source}", repr([source])):
        assert "hunter2-pass" not in text
        assert "kp-42" not in text
        assert "password='********'" in text and "key_password='********'" in text
    assert "password=None" in repr(make())


@pytest.mark.parametrize(
    ("text", "value", "shown"),
    [
        ("90s", timedelta(seconds=90), "90s"),
        ("60m", timedelta(minutes=60), "1h"),
        ("1h", timedelta(hours=1), "1h"),
        ("30d", timedelta(days=30), "30d"),
        ("2w", timedelta(weeks=2), "2w"),
        ("14d", timedelta(weeks=2), "2w"),
        ("1h30m", timedelta(minutes=90), "90m"),
        (" 5 M ", timedelta(minutes=5), "5m"),
        ("0s", timedelta(0), "0s"),
    ],
)
def test_durations(text: str, value: timedelta, shown: str) -> None:
    assert parse_duration(text) == value
    assert format_duration(value) == shown
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["", "60", "abc", "5x", "1.5h", "-1d", "h", "1h 2", "1d!"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text, field="polling_interval")
    message = str(info.value)
    assert message.startswith("polling_interval: ")
    assert "e.g. 90s, 60m" in message or "e.g. 60m" in message
    assert isinstance(info.value, SourceError) and info.value.field == "polling_interval"


def test_client_options_fit_the_client() -> None:
    source = validate(
        make(
            port=8443,
            username="apikey",
            password="pw",
            cert_file="/c.pem",
            key_file="/k.pem",
            key_password="kp",
            ca_cert="/ca.pem",
            verify_ssl=False,
            proxy_url="http://proxy.example:3128",
            discovery_path="/taxii/discovery",
            taxii_version="1.0",
        )
    )
    options = client_options(source)
    assert options == {
        "host": "otx.alienvault.com",
        "port": 8443,
        "use_https": True,
        "discovery_path": "/taxii/discovery",
        "version": "1.0",
        "username": "apikey",
        "password": "pw",
        "cert_file": "/c.pem",
        "key_file": "/k.pem",
        "key_password": "kp",
        "ca_cert": "/ca.pem",
        "verify_ssl": False,
        "proxy_url": "http://proxy.example:3128",
    }
    assert set(options) <= set(inspect.signature(TaxiiClient).parameters)
    plain = client_options(validate(make(use_https=False, port=80)))
    with TaxiiClient(**plain) as client:
        assert client._absolute("/taxii/poll") == "http://otx.alienvault.com/taxii/poll"


def test_endpoint() -> None:
    assert endpoint(make()) == "https://otx.alienvault.com/taxii/poll"
    assert endpoint(make(use_https=False, port=9000, poll_path="/p")) == (
        "http://otx.alienvault.com:9000/p"
    )
    assert endpoint(validate(make(hostname="::1", port=443))) == "https://[::1]/taxii/poll"

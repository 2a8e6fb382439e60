"""The fast paths of normalisation agree with the full normalisers, value for value.

The fast paths exist only for speed; if one ever disagreed with the reference it would split one
observable into two store keys. So every generated value is normalised both ways.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedgate.observables import InvalidValue, Kind, _fast, _normalise_full, normalise

_LABEL = st.from_regex(r"[a-z0-9][a-z0-9-]{0,8}[a-z0-9]|[a-z0-9]", fullmatch=True)
_DOMAINS = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_LABEL, min_size=1, max_size=4),
    st.from_regex(r"[a-z][a-z0-9-]{0,6}[a-z0-9]|[a-z]", fullmatch=True),
)
_IPV4 = st.ip_addresses(v=4).map(str)
_PATH = st.from_regex(
    r"(/([A-Za-z0-9._~!$&'*+,;=:@/-]|%[0-9A-Fa-f]{2}){0,12}){0,3}", fullmatch=True
)
_QUERY = st.from_regex(r"(\?([A-Za-z0-9._~!$&'*+,;=:@/?-]|%[0-9A-Fa-f]{2}){0,12})?", fullmatch=True)
_EMAILS = st.builds(
    lambda local, host: f"{local}@{host}",
    st.from_regex(r"[A-Za-z0-9._+-]{1,20}", fullmatch=True),
    st.one_of(_DOMAINS, _IPV4),
)
_URLS = st.builds(
    lambda scheme, host, path, query: f"{scheme}://{host}{path}{query}",
    st.sampled_from(["http", "https"]),
    st.one_of(_DOMAINS, _IPV4),
    _PATH,
    _QUERY,
)
_NEAR_MISSES = st.text(alphabet="abcxyzAZ019-._/:?%[]()@#\\~ ", min_size=1, max_size=40)


def _full(kind: Kind, value: str) -> tuple[Kind, str] | str:
    try:
        return _normalise_full(kind, value)
    except InvalidValue:
        return "invalid"


def _both(kind: Kind, value: str) -> None:
    fast = _fast(kind, value)
    if fast is not None:
        assert fast == _full(kind, value), value
    try:
        assert normalise(kind, value) == _normalise_full(kind, value)
    except InvalidValue:
        with pytest.raises(InvalidValue):
            _normalise_full(kind, value)


@settings(max_examples=400, deadline=None)
@given(_DOMAINS)
def test_domains(value: str) -> None:
    _both(Kind.DOMAIN, value)
    _both(Kind.DOMAIN, value.upper())


@settings(max_examples=300, deadline=None)
@given(_IPV4)
def test_ipv4(value: str) -> None:
    _both(Kind.IPV4, value)
    assert _fast(Kind.IPV4, value) is not None


@settings(max_examples=400, deadline=None)
@given(_URLS)
def test_urls(value: str) -> None:
    _both(Kind.URL, value)


@settings(max_examples=400, deadline=None)
@given(_EMAILS)
def test_emails(value: str) -> None:
    _both(Kind.EMAIL, value)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([Kind.DOMAIN, Kind.URL, Kind.IPV4, Kind.MD5, Kind.EMAIL]), _NEAR_MISSES)
def test_near_misses(kind: Kind, text: str) -> None:
    _both(kind, text)
    _both(kind, "http://" + text)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (Kind.URL, "http://evil.example"),
        (Kind.URL, "http://evil.example?"),
        (Kind.URL, "https://192.0.2.1/a/b?c=d&e"),
        (Kind.DOMAIN, "xn--bcher-kva.example"),
        (Kind.DOMAIN, "r3---sn-abc.example"),
        (Kind.DOMAIN, "a.b0"),
        (Kind.IPV4, "010.0.0.1"),
        (Kind.MD5, "D41D8CD98F00B204E9800998ECF8427E"),
        (Kind.URL, "http://a.example/x?r=%2Fq%2f"),
        (Kind.EMAIL, ".a..b@Example.COM"),
        (Kind.EMAIL, "x@192.0.2.1"),
        (Kind.SHA256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ],
)
def test_edge_cases(kind: Kind, value: str) -> None:
    _both(kind, value)

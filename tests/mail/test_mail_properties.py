"""Property tests: generated URLs are found and normalised as the store normalises them; no
input (mutated samples, arbitrary bodies) crashes the inspector."""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import getaddresses

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mail_helpers import SAMPLES, values

from feedgate.mail._headers import _ONE_ADDRESS
from feedgate.mail.inspect import inspect_message
from feedgate.mail.model import Inspection, Lookup, Part
from feedgate.observables import InvalidValue, normalise_url, url_host

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_tld = st.from_regex(r"[a-zA-Z]{2,6}", fullmatch=True)
_domain = st.builds(
    lambda labels, tld: ".".join([*labels, tld]), st.lists(_label, min_size=1, max_size=3), _tld
)
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_escape = st.sampled_from(["%2f", "%2F", "%20", "%c3%a9", "%7E"])
_segment = st.lists(
    st.one_of(st.text(alphabet=_ALNUM + "-_~", min_size=1, max_size=8), _escape),
    min_size=1,
    max_size=3,
).map("".join)
_path = st.lists(_segment, max_size=4).map(lambda s: "/" + "/".join(s) if s else "")
_query = st.lists(
    st.tuples(st.text(_ALNUM, min_size=1, max_size=5), st.text(_ALNUM + "-_", max_size=6)),
    max_size=3,
).map(lambda kv: "?" + "&".join(f"{k}={v}" for k, v in kv) if kv else "")
_port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))


@st.composite
def _urls(draw: st.DrawFn) -> str:
    """A URL as someone writes it in a message: scheme (any case) or www., host, path, query."""
    path, query = draw(_path), draw(_query)
    if draw(st.booleans()):
        host = "www." + draw(_domain)
        url = host + draw(_port) + path + query
    else:
        scheme = draw(st.sampled_from(["http", "https", "ftp", "HTTP", "Https"]))
        host = draw(st.one_of(_domain, _ipv4))
        url = f"{scheme}://{host}{draw(_port)}{path}{query}"
    try:
        normalise_url(url)
    except InvalidValue:
        assume(False)
    return url


def _offered_urls(result: Inspection) -> list[str]:
    return values(result, Part.URL, Lookup.URL)


@_SETTINGS
@given(url=_urls(), cte=st.sampled_from(["7bit", "8bit", "quoted-printable", "base64"]))
def test_url_in_plain_text_is_offered_as_the_store_normalises_it(url: str, cte: str) -> None:
    message = EmailMessage()
    message.set_content(f"Hello,\n\nplease see {url} and reply.\n", cte=cte)
    result = inspect_message(message.as_bytes())
    expected = normalise_url(url)[1]
    assert _offered_urls(result) == [expected]
    host = url_host(expected)
    assert host is not None
    hosts = values(result, Part.URL, Lookup.DOMAIN) + values(result, Part.URL, Lookup.IP)
    assert hosts == [host]


@_SETTINGS
@given(url=_urls(), cte=st.sampled_from(["quoted-printable", "base64", "8bit"]))
def test_url_in_html_is_offered_as_the_store_normalises_it(url: str, cte: str) -> None:
    message = EmailMessage()
    message.set_content("plain part without links")
    escaped = html.escape(url)
    markup = f'<html><body><p>Go <a href="{escaped}">{escaped}</a></p></body></html>\n'
    message.add_alternative(markup, subtype="html", cte=cte)
    result = inspect_message(message.as_bytes())
    assert _offered_urls(result) == [normalise_url(url)[1]]


@st.composite
def _mutated_sample(draw: st.DrawFn) -> bytes:
    data = bytearray(SAMPLES[draw(st.integers(0, len(SAMPLES) - 1))].read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "truncate":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(
                st.one_of(
                    st.binary(max_size=20),
                    st.sampled_from(
                        [
                            b"\r\n",
                            b"\n\n",
                            b"--",
                            b"=?utf-8?b?",
                            b"=\r\n",
                            b"[.]",
                            b"http://",
                            b"Content-Type: multipart/mixed; boundary=x\r\n",
                            b"PK\x03\x04",
                        ]
                    ),
                )
            )
        else:
            del data[at : at + draw(st.integers(1, 50))]
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_mutated_sample())
def test_no_mutated_sample_crashes_the_inspector(raw: bytes) -> None:
    result = inspect_message(raw)
    assert isinstance(result, Inspection)
    keys = [(o.part, o.lookup, o.value) for o in result.offers]
    assert len(keys) == len(set(keys))


@_SETTINGS
@given(
    body=st.text(max_size=300),
    subject=st.text(max_size=60),
    charset=st.sampled_from(["utf-8", "latin-1", "utf-16", "koi8-r"]),
)
def test_no_body_or_subject_crashes_the_inspector(body: str, subject: str, charset: str) -> None:
    raw = (
        f"Subject: {subject}\r\nContent-Type: text/html; charset={charset}\r\n\r\n{body}"
    ).encode("utf-8", "surrogatepass")
    assert isinstance(inspect_message(raw), Inspection)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet='ab@.<> ",;:()[]\\=?xyz\t', max_size=30)
    | st.builds(
        lambda name, local, host: f"{name} <{local}@{host}>",
        st.text(alphabet='ab ",=?', max_size=8),
        st.text(alphabet="ab.+-", min_size=1, max_size=6),
        st.text(alphabet="ab.-", min_size=1, max_size=6),
    )
)
def test_the_one_address_fast_path_agrees_with_the_standard_parser(header: str) -> None:
    """The inspector reads a plain one-address header without ``getaddresses``; where it
    does, it must find what ``getaddresses`` finds."""
    match = _ONE_ADDRESS.fullmatch(header)
    if match is not None:
        assert [a for _, a in getaddresses([header]) if a] == [match.group(1) or match.group(2)]

"""The inspector on messages built here: each part, each encoding, the Received forms."""

from __future__ import annotations

from email.message import EmailMessage

from mail_helpers import has_hashes, skipped_text, urls, values

from feedgate.mail.inspect import inspect_message
from feedgate.mail.model import Lookup, Part
from feedgate.observables import normalise_url


def _message(body: str = "hello\n", **headers: str) -> EmailMessage:
    message = EmailMessage()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


# --- client-ip ---------------------------------------------------------------------------------


def _received(value: str) -> bytes:
    return b"Received: " + value.encode() + b"\r\nFrom: a@b.example\r\n\r\nbody\r\n"


def test_received_postfix_ipv4_from_the_comment_not_the_helo() -> None:
    raw = _received(
        "from [192.0.2.1] (mail.example.net [198.51.100.7])\r\n\tby mx.example.org "
        "(Postfix) with ESMTP id 1; Mon, 1 Jan 2024 00:00:00 +0000"
    )
    result = inspect_message(raw)
    assert values(result, Part.CLIENT_IP, Lookup.IP) == ["198.51.100.7"]


def test_received_ipv6_literal() -> None:
    raw = _received(
        "from mail.example.net (mail.example.net [IPv6:2001:DB8:0:0::25])\r\n by mx.example.org"
    )
    assert values(inspect_message(raw), Part.CLIENT_IP, Lookup.IP) == ["2001:db8::25"]


def test_received_only_the_topmost_counts() -> None:
    raw = (
        b"Received: from b.example (b.example [203.0.113.9]) by mx.example.org\r\n"
        b"Received: from c.example (c.example [198.51.100.1]) by b.example\r\n\r\nx\r\n"
    )
    assert values(inspect_message(raw), Part.CLIENT_IP, Lookup.IP) == ["203.0.113.9"]


def test_received_helo_literal_when_there_is_no_comment() -> None:
    raw = _received("from [203.0.113.50] by mx.example.org with SMTP")
    assert values(inspect_message(raw), Part.CLIENT_IP, Lookup.IP) == ["203.0.113.50"]


def test_no_received_no_client_ip() -> None:
    result = inspect_message(b"From: a@b.example\r\nSubject: x\r\n\r\nbody\r\n")
    assert values(result, Part.CLIENT_IP, Lookup.IP) == []


def test_received_without_from_clause_gives_nothing() -> None:
    raw = _received("by mx.example.org (Postfix, from userid 0) id 1; Mon, 1 Jan 2024")
    assert values(inspect_message(raw), Part.CLIENT_IP, Lookup.IP) == []


def test_session_client_ip_wins_over_received() -> None:
    raw = _received("from x.example (x.example [198.51.100.7]) by mx.example.org")
    result = inspect_message(raw, client_ip="::ffff:192.0.2.33")
    assert values(result, Part.CLIENT_IP, Lookup.IP) == ["192.0.2.33"]


def test_bad_session_client_ip_is_skipped_not_raised() -> None:
    result = inspect_message(b"\r\n\r\n", client_ip="not-an-ip")
    assert values(result, Part.CLIENT_IP, Lookup.IP) == []
    assert "client-ip: not an IP address" in skipped_text(result)


# --- senders ------------------------------------------------------------------------------------


def test_senders_each_address_and_domain() -> None:
    raw = (
        'From: "Boss" <Boss@Example.COM>,\r\n other@b\u00fccher.example\r\n'  # SMTPUTF8
        "Sender: relay@lists.example.org\r\n"
        "Reply-To: reply@evil.example\r\n"
        "Return-Path: <bounce@bounces.example.net>\r\n\r\nbody\r\n"
    ).encode()
    result = inspect_message(raw)
    assert values(result, Part.FROM, Lookup.EMAIL) == [
        "Boss@example.com",
        "other@xn--bcher-kva.example",
    ]
    assert values(result, Part.FROM, Lookup.DOMAIN) == ["example.com", "xn--bcher-kva.example"]
    assert values(result, Part.SENDER, Lookup.DOMAIN) == ["lists.example.org"]
    assert values(result, Part.REPLY_TO, Lookup.EMAIL) == ["reply@evil.example"]
    assert values(result, Part.ENVELOPE_FROM, Lookup.EMAIL) == ["bounce@bounces.example.net"]
    seen = next(o.seen for o in result.offers if o.value == "Boss@example.com")
    assert seen == "Boss@Example.COM"


def test_every_from_header_counts() -> None:
    raw = b"From: a@one.example\r\nFrom: b@two.example\r\n\r\nx\r\n"
    assert values(inspect_message(raw), Part.FROM, Lookup.DOMAIN) == ["one.example", "two.example"]


def test_envelope_from_of_the_session_wins_and_null_sender_offers_nothing() -> None:
    raw = b"Return-Path: <x@return.example>\r\nFrom: a@b.example\r\n\r\nx\r\n"
    given = inspect_message(raw, envelope_from="<MAIL@From.Example>")
    assert values(given, Part.ENVELOPE_FROM, Lookup.EMAIL) == ["MAIL@from.example"]
    assert values(given, Part.ENVELOPE_FROM, Lookup.DOMAIN) == ["from.example"]
    for null_sender in ("", "<>"):  # MAIL FROM:<> in the session: no Return-Path fallback
        null = inspect_message(raw, envelope_from=null_sender)
        assert values(null, Part.ENVELOPE_FROM, Lookup.EMAIL) == []
    assert values(inspect_message(raw), Part.ENVELOPE_FROM, Lookup.EMAIL) == ["x@return.example"]
    bounce = inspect_message(raw.replace(b"<x@return.example>", b"<>"))
    assert values(bounce, Part.ENVELOPE_FROM, Lookup.EMAIL) == []


def test_address_literal_offers_an_ip() -> None:
    result = inspect_message(b"From: root@[192.0.2.5]\r\n\r\nx\r\n")
    assert values(result, Part.FROM, Lookup.IP) == ["192.0.2.5"]
    assert values(result, Part.FROM, Lookup.EMAIL) == ["root@[192.0.2.5]"]


def test_eight_bit_headers_do_not_break_anything() -> None:
    raw = "From: J\u00f6rg <jorg@example.com>\r\nSubject: Gr\u00fc\u00dfe\r\n\r\nx\r\n"
    result = inspect_message(raw.encode("utf-8"))
    assert values(result, Part.FROM, Lookup.EMAIL) == ["jorg@example.com"]
    assert result.subject == "Grüße"
    latin = inspect_message(raw.encode("latin-1"))
    assert values(latin, Part.FROM, Lookup.EMAIL) == ["jorg@example.com"]
    assert latin.subject is not None and latin.subject.startswith("Gr")


def test_message_id_and_subject_are_decoded_and_bounded() -> None:
    message = _message(Subject="Rechnung \u00fcber https://pay.example.com/x", Message_ID="<a@b>")
    result = inspect_message(message.as_bytes())
    assert result.subject == "Rechnung über https://pay.example.com/x"
    assert result.message_id == "<a@b>"
    assert urls(result) == ["https://pay.example.com/x"]
    long = inspect_message(b"Subject: " + b"x" * 5000 + b"\r\n\r\n")
    assert long.subject is not None and len(long.subject) == 998


# --- URLs in bodies -------------------------------------------------------------------------------


def test_plain_text_url_forms() -> None:
    body = (
        "Go to https://Login.Example.COM:443/a/b?c=d, or www.example.net/path.\n"
        "Defanged: hxxps[:]//evil[.]example/dl and evil2[.]example\n"
        "IPs: http://192.0.2.7/x and http://[2001:db8::7]:8080/y\n"
        "Again (https://login.example.com/a/b?c=d) and https://login.example.com/a/b?c=d\n"
    )
    result = inspect_message(_message(body).as_bytes())
    assert urls(result) == [
        "https://login.example.com/a/b?c=d",
        "http://www.example.net/path",
        "https://evil.example/dl",
        "http://192.0.2.7/x",
        "http://[2001:db8::7]:8080/y",
        "http://evil2.example/",
    ]
    assert values(result, Part.URL, Lookup.IP) == ["192.0.2.7", "2001:db8::7"]
    assert "www.example.net" in values(result, Part.URL, Lookup.DOMAIN)
    first = next(o for o in result.offers if o.value == "https://login.example.com/a/b?c=d")
    assert first.seen == "https://Login.Example.COM:443/a/b?c=d"  # the first seen is kept


def test_html_href_src_entities_and_protocol_relative() -> None:
    html = (
        '<html><body><a href="https://shop.example.com/p?a=1&amp;b=2">buy</a>'
        "<img src='http://img.example.com/i.png'>"
        '<a href="//cdn.example.org/lib.js">x</a>'
        "<p>h&#116;tps://entity.example.com/z</p></body></html>"
    )
    message = _message("see html")
    message.add_alternative(html, subtype="html")
    result = inspect_message(message.as_bytes())
    assert set(urls(result)) == {
        "https://shop.example.com/p?a=1&b=2",
        "http://img.example.com/i.png",
        "http://cdn.example.org/lib.js",
        "https://entity.example.com/z",
    }


def test_quoted_printable_soft_breaks_are_joined() -> None:
    url = "https://example.com/" + "very-long-segment/" * 8 + "end?x=1"
    message = _message(f"Click {url} now\n", cte="quoted-printable")
    raw = message.as_bytes()
    assert b"=\n" in raw  # the encoder broke the URL with soft line breaks
    assert urls(inspect_message(raw)) == [url]


def test_qp_html_with_encoded_equals_sign() -> None:
    raw = (
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
        b'\r\n\r\n<a href=3D"https://qp.example.com/a?b=3Dc&amp;d=3De">x</a>=\r\n\r\n'
    )
    assert urls(inspect_message(raw)) == ["https://qp.example.com/a?b=c&d=e"]


def test_base64_and_eight_bit_bodies() -> None:
    b64 = _message("visit https://b64.example.com/\u00e4rger\n", cte="base64")
    assert urls(inspect_message(b64.as_bytes())) == [
        normalise_url("https://b64.example.com/\u00e4rger")[1]
    ]
    raw = (
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "see https://\u00fcber.example/\u00e4 \r\n"
    ).encode()
    assert urls(inspect_message(raw)) == [normalise_url("https://über.example/ä")[1]]


def test_charset_oddities() -> None:
    def body(charset: str, data: bytes) -> bytes:
        return (
            f"Content-Type: text/plain; charset={charset}\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode() + data

    latin = body("iso-8859-1", "go https://l.example.com/caf\u00e9 ok".encode("latin-1"))
    assert urls(inspect_message(latin)) == [normalise_url("https://l.example.com/café")[1]]
    lying = body("us-ascii", "go https://a.example.com/\u00e9t\u00e9 ok".encode())
    assert urls(inspect_message(lying)) == [normalise_url("https://a.example.com/été")[1]]
    unknown = body("x-no-such-charset", b"go https://u.example.com/p ok")
    assert urls(inspect_message(unknown)) == ["https://u.example.com/p"]
    codec = body("idna", b"go https://i.example.com/p ok")  # a codec refusing errors="replace"
    assert urls(inspect_message(codec)) == ["https://i.example.com/p"]
    utf16 = body("utf-16", "go https://w.example.com/p ok".encode("utf-16"))
    assert urls(inspect_message(utf16)) == ["https://w.example.com/p"]


# --- text attachments and attachments ---------------------------------------------------------


def test_text_attachments_give_urls_and_hashes() -> None:
    message = _message("body without links")
    csv = b"name,link\r\nx,https://csv.example.com/row1\r\n"
    ics = b"BEGIN:VEVENT\r\nURL:https://cal.example.com/meet\r\nEND:VEVENT\r\n"
    txt = b"notes: www.notes.example/readme\n"
    message.add_attachment(csv, maintype="text", subtype="csv", filename="list.csv")
    message.add_attachment(ics, maintype="text", subtype="calendar", filename="invite.ics")
    message.add_attachment(txt, maintype="text", subtype="plain", filename="notes.txt")
    result = inspect_message(message.as_bytes())
    assert urls(result) == [
        "https://csv.example.com/row1",
        "https://cal.example.com/meet",
        "http://www.notes.example/readme",
    ]
    for data in (csv, ics, txt):
        assert has_hashes(result, data)
    body_hashes = values(result, Part.ATTACHMENT, Lookup.SHA256)
    assert len(body_hashes) == 3  # the text body itself is not an attachment


def test_inline_image_and_binary_attachment_are_hashed_with_their_names() -> None:
    message = _message("see picture")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    exe = b"MZ" + b"\x00\xff" * 300
    message.add_attachment(png, maintype="image", subtype="png", disposition="inline")
    message.add_attachment(exe, maintype="application", subtype="octet-stream", filename="a.exe")
    result = inspect_message(message.as_bytes())
    assert has_hashes(result, png) and has_hashes(result, exe)
    seen = {o.seen for o in result.offers if o.part is Part.ATTACHMENT}
    assert seen == {"part 1.2 (image/png)", "a.exe"}


def test_nested_message_parts_are_inspected() -> None:
    inner = _message("inner link https://inner.example.com/x", Subject="inner http://subj.example/")
    secret = b"%PDF-1.4 inner attachment"
    inner.add_attachment(secret, maintype="application", subtype="pdf", filename="inner.pdf")
    outer = _message("outer", From="a@outer.example")
    outer.add_attachment(inner)
    result = inspect_message(outer.as_bytes())
    assert has_hashes(result, secret)
    assert set(urls(result)) == {"https://inner.example.com/x", "http://subj.example/"}
    assert values(result, Part.FROM, Lookup.EMAIL) == ["a@outer.example"]


def test_same_hash_twice_is_offered_once() -> None:
    message = _message("two copies")
    for name in ("a.bin", "b.bin"):
        message.add_attachment(b"same bytes", maintype="application", subtype="x", filename=name)
    result = inspect_message(message.as_bytes())
    sha = [o for o in result.offers if o.lookup is Lookup.SHA256]
    assert len(sha) == 1 and sha[0].seen == "a.bin"

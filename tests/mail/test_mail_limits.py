"""Every limit of the inspector: what it cuts is reported as Skipped, never dropped silently."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from mail_helpers import has_hashes, skipped_text, urls

from feedgate.mail import limits
from feedgate.mail.inspect import inspect_message
from feedgate.mail.model import Lookup, Part


def _plain(body: str) -> bytes:
    return b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body.encode()


def test_too_many_urls_stops_at_the_limit_and_says_so() -> None:
    count = limits.MAX_URLS + 50
    result = inspect_message(_plain(" ".join(f"https://h{i}.example.com/" for i in range(count))))
    found = urls(result)
    assert len(found) == limits.MAX_URLS
    assert found[0] == "https://h0.example.com/"
    assert f"url: more than {limits.MAX_URLS} distinct URLs" in skipped_text(result)


def test_hundred_thousand_urls_are_scanned_within_the_limits() -> None:
    body = "\n".join(f"http://x{i}.example/p?q={i}" for i in range(100_000))
    result = inspect_message(_plain(body))
    assert len(urls(result)) == limits.MAX_URLS
    assert "rest of the message was not searched for URLs" in skipped_text(result)


def test_too_many_candidates_that_are_no_urls() -> None:
    body = " ".join(f"http://bad{i}" for i in range(limits.MAX_URL_CANDIDATES + 10))
    result = inspect_message(_plain(body))  # one-label hosts: not URLs the store could hold
    assert urls(result) == []
    assert f"more than {limits.MAX_URL_CANDIDATES} distinct URL candidates" in skipped_text(result)


def test_a_url_longer_than_the_limit_is_reported() -> None:
    long = "https://long.example.com/" + "a" * limits.MAX_URL_CHARS
    result = inspect_message(_plain(f"{long} https://short.example.com/"))
    assert urls(result) == ["https://short.example.com/"]
    assert f"longer than {limits.MAX_URL_CHARS} characters" in skipped_text(result)


def test_text_beyond_the_scan_limit_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_TEXT_SCAN_BYTES", 1000)
    body = "https://early.example.com/ " + "x" * 2000 + " https://late.example.com/"
    result = inspect_message(_plain(body))
    assert urls(result) == ["https://early.example.com/"]
    assert "only the first 1000 bytes searched for URLs" in skipped_text(result)


def test_a_part_over_the_size_limit_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_PART_BYTES", 10_000)
    message = EmailMessage()
    message.set_content("small body https://ok.example.com/")
    message.add_attachment(bytes(20_000), maintype="application", subtype="x", filename="big")
    result = inspect_message(message.as_bytes())
    assert urls(result) == ["https://ok.example.com/"]
    assert not has_hashes(result, bytes(20_000))
    assert "big: part of" in skipped_text(result)


def test_the_message_scan_budget_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    message = EmailMessage()
    message.set_content("body")
    for name in ("one", "two", "three"):
        message.add_attachment(
            name.encode() * 400, maintype="application", subtype="x", filename=name
        )
    raw = message.as_bytes()
    monkeypatch.setattr(limits, "MAX_SCAN_BYTES", 2500)
    result = inspect_message(raw)
    assert has_hashes(result, b"one" * 400) and has_hashes(result, b"two" * 400)
    assert not has_hashes(result, b"three" * 400)
    assert "three: not decoded: the message's" in skipped_text(result)


def test_too_many_parts() -> None:
    boundary = "b"
    parts = "".join(
        f"--{boundary}\r\nContent-Type: application/x-n\r\n\r\npart {i}\r\n"
        for i in range(limits.MAX_PARTS + 10)
    )
    raw = (
        f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{parts}--{boundary}--\r\n"
    ).encode()
    result = inspect_message(raw)
    assert f"more than {limits.MAX_PARTS} parts" in skipped_text(result)
    assert has_hashes(result, b"part 0")
    assert not has_hashes(result, f"part {limits.MAX_PARTS + 5}".encode())


def test_nesting_deeper_than_the_limit() -> None:
    depth = limits.MAX_NESTING + 5
    head = "".join(
        f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(depth)
    )
    tail = "".join(f"--b{i}--\r\n" for i in reversed(range(depth + 1)))
    leaf = f"--b{depth}\r\nContent-Type: text/plain\r\n\r\nhttps://deep.example.com/\r\n"
    raw = f"Content-Type: multipart/mixed; boundary=b0\r\n\r\n{head}{leaf}{tail}".encode()
    result = inspect_message(raw)
    assert urls(result) == []
    assert f"nested deeper than {limits.MAX_NESTING} levels" in skipped_text(result)


def test_absurd_nesting_does_not_crash_the_parser_or_us() -> None:
    depth = 3000  # beyond the interpreter's recursion limit in the standard library's parser
    head = "".join(
        f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n" for i in range(depth)
    )
    raw = f"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n{head}".encode()
    result = inspect_message(raw)
    assert result.offers[0].value == "a@b.example"
    assert result.skipped


def test_a_huge_header_is_cut_and_reported() -> None:
    raw = (
        b"From: a@b.example, " + b"x" * (limits.MAX_HEADER_CHARS * 2) + b"\r\n"
        b"Subject: " + b"y " * limits.MAX_HEADER_CHARS + b"https://after.example.com/\r\n\r\n"
    )
    result = inspect_message(raw)
    assert [o.value for o in result.offers if o.part is Part.FROM][:1] == ["a@b.example"]
    text = skipped_text(result)
    assert f"from: header longer than {limits.MAX_HEADER_CHARS} characters" in text
    assert "subject: header longer" in text
    assert result.subject is not None and len(result.subject) == limits.MAX_SUBJECT_CHARS


def test_too_many_addresses() -> None:
    addresses = ", ".join(f"u{i}@example.com" for i in range(limits.MAX_ADDRESSES + 3))
    result = inspect_message(f"From: {addresses}\r\n\r\n".encode())
    emails = [o for o in result.offers if o.part is Part.FROM and o.lookup is Lookup.EMAIL]
    assert len(emails) == limits.MAX_ADDRESSES
    assert f"more than {limits.MAX_ADDRESSES} addresses" in skipped_text(result)


def test_urls_inside_a_url_are_capped() -> None:
    chain = "".join(f"http://r{i}.example/?u=" for i in range(limits.MAX_EMBEDDED_URLS + 5))
    result = inspect_message(_plain(chain + "http://end.example/"))
    assert len(urls(result)) == limits.MAX_EMBEDDED_URLS + 1  # the outer URL and 32 inside
    assert f"a URL holds more than {limits.MAX_EMBEDDED_URLS} URLs" in skipped_text(result)


def test_one_endless_token_is_reported_not_copied() -> None:
    result = inspect_message(_plain("http://" * 200_000 + " https://after.example.com/"))
    assert urls(result) == ["https://after.example.com/"]
    assert f"a URL longer than {limits.MAX_URL_CHARS} characters" in skipped_text(result)

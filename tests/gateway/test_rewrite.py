"""feedgate.mail.rewrite: only the header block changes; the body is the same bytes."""

from __future__ import annotations

from feedgate.mail.rewrite import rewrite, split_message


def test_the_subject_gets_the_prefix_once_and_the_body_is_untouched() -> None:
    raw = b"From: a@x\r\nSubject: hello\r\n  world\r\n\r\n.body\r\n\r\nmore\r\n"
    out = rewrite(raw, subject_prefix="[THREAT]")
    assert out == b"From: a@x\r\nSubject: [THREAT] hello\r\n  world\r\n\r\n.body\r\n\r\nmore\r\n"
    assert rewrite(out, subject_prefix="[THREAT]") == out  # already there: not twice


def test_encoded_words_stay_and_an_already_prefixed_encoded_subject_is_left() -> None:
    raw = b"Subject: =?utf-8?b?W1RIUkVBVF0gY2Fmw6k=?=\n\nbody\n"  # "[THREAT] café"
    assert rewrite(raw, subject_prefix="[THREAT]") == raw
    other = b"Subject: =?utf-8?q?caf=C3=A9?=\n\nbody\n"
    assert rewrite(other, subject_prefix="[THREAT]") == (
        b"Subject: [THREAT] =?utf-8?q?caf=C3=A9?=\n\nbody\n"
    )


def test_a_non_ascii_prefix_is_encoded_and_a_missing_subject_is_added() -> None:
    out = rewrite(b"From: a@x\r\n\r\nbody", subject_prefix="[MENACE\u00e9]")
    block, _sep, body = split_message(out)
    assert body == b"body"
    assert b"Subject: =?utf-8?" in block and out.isascii()


def test_the_header_replaces_any_the_sender_put_and_is_folded() -> None:
    raw = b"X-Feedgate-Threat: none, trust me\r\nSubject: s\r\n\r\nbody\r\n"
    value = "; ".join(f"otx url http://bad{i}.example/path" for i in range(6))
    out = rewrite(raw, header=value)
    block, _sep, body = split_message(out)
    assert body == b"body\r\n" and b"trust me" not in out
    lines = block.split(b"\r\n")
    assert lines[0].startswith(b"X-Feedgate-Threat: otx url http://bad0.example/path;")
    assert all(len(line) <= 100 for line in lines)
    assert b"Subject: s\r\n" in block


def test_a_message_without_a_body_separator_keeps_its_bytes_after_the_header() -> None:
    out = rewrite(b"Subject: x\r\n", header="otx domain bad.example")
    assert out == b"X-Feedgate-Threat: otx domain bad.example\r\nSubject: x\r\n\r\n"

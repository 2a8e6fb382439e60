"""Tag and header rules applied to a message's bytes: the header block changes, nothing else.

A message that is re-serialised by ``email`` comes out re-encoded (line lengths, transfer
encodings, header folding), which breaks DKIM signatures of the body and can change what the
recipient sees. So the rewrite works on the raw header block: it inserts
``X-Feedgate-Threat:`` at the top (removing any the sender put there, who must not forge or hide
our verdict) and puts the prefix before the Subject's first word, and the body follows byte for
byte.

Subjects: a prefix already there (decoded) is not added again; a plain ASCII prefix goes before
the raw value as it is, an encoded-word subject keeps its encoded words (RFC 2047 allows plain
text beside them, separated by white space); a prefix that is not ASCII is itself encoded as a
UTF-8 encoded word. A message without a Subject gets one, the prefix alone.
"""

from __future__ import annotations

import email.errors
import email.header
import re
from typing import Final

from .policy import HEADER_NAME

__all__ = ["prefixed_value", "rewrite", "split_message"]

_MAX_LINE: Final = 78  # where a header we write is folded (RFC 5322's "should")
_FIELD: Final = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.ASCII)


def split_message(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """``(header block, separator, body)``: the header block up to (not including) the empty
    line that ends it, the empty line's bytes, and the rest untouched. A message with no
    empty line is all header block."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            other = raw.find(b"\n\n" if sep == b"\r\n\r\n" else b"\r\n\r\n")
            if other < 0 or at <= other:
                half = len(sep) // 2
                return raw[: at + half], raw[at + half : at + len(sep)], raw[at + len(sep) :]
    if raw.startswith((b"\r\n", b"\n")):  # no headers at all: the body starts at once
        eol = b"\r\n" if raw.startswith(b"\r\n") else b"\n"
        return b"", eol, raw[len(eol) :]
    return raw, b"", b""


def _fields(block: bytes) -> list[bytes]:
    """The header block's fields, each with its continuation lines and line ends."""
    fields: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _name(field: bytes) -> bytes:
    found = _FIELD.match(field)
    return found.group(1).lower() if found else b""


def _fold(name: str, value: str, eol: bytes, sep: str = "; ") -> bytes:
    """``name: value`` folded at ``sep`` boundaries to about :data:`_MAX_LINE` columns."""
    pieces = value.split(sep)
    lines: list[str] = [f"{name}: {pieces[0]}"]
    for piece in pieces[1:]:
        if len(lines[-1]) + len(sep) + len(piece) > _MAX_LINE:
            lines[-1] += sep.rstrip()
            lines.append(" " + piece)
        else:
            lines[-1] += sep + piece
    return eol.join(line.encode("ascii", "replace") for line in lines) + eol


def _decoded(value: bytes) -> str:
    """A Subject's text as a reader sees it (encoded words decoded), for the "already
    prefixed" check; undecodable parts are kept as they are."""
    text = value.decode("utf-8", "replace")
    try:
        return str(email.header.make_header(email.header.decode_header(" ".join(text.split()))))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return text


def prefixed_value(value: bytes, prefix: str) -> bytes | None:
    """A Subject's raw value (after the colon: leading space, folds, line end) with ``prefix``
    before it, or None when the subject already starts with it. The one rule for the gateway's
    rewrite and the milter's Subject change: a plain ASCII prefix goes before the raw value as
    it is, a non-ASCII one as a UTF-8 encoded word, and the subject's own encoded words stay."""
    if _decoded(value).strip().startswith(prefix):
        return None
    shown = prefix.encode("ascii") if prefix.isascii() else _encoded(prefix)
    stripped = value.lstrip(b" \t")
    if not stripped.strip():  # an empty Subject: what is left is its line end, if any
        return b" " + shown + stripped
    return b" " + shown + b" " + stripped


def _prefixed(field: bytes, prefix: str) -> bytes:
    """A Subject field (name, value, folds, line end) with ``prefix`` before its value."""
    colon = field.index(b":")
    value = prefixed_value(field[colon + 1 :], prefix)
    return field if value is None else field[: colon + 1] + value


def _encoded(text: str) -> bytes:
    return email.header.Header(text, "utf-8").encode().encode("ascii")


def rewrite(raw: bytes, *, subject_prefix: str | None = None, header: str | None = None) -> bytes:
    """``raw`` with the Subject prefixed by ``subject_prefix`` and :data:`HEADER_NAME` set to
    ``header`` (each when given); the body and every other header byte for byte (module doc)."""
    if subject_prefix is None and header is None:
        return raw
    block, sep, body = split_message(raw)
    eol = b"\r\n" if b"\r\n" in block or sep == b"\r\n" or not block else b"\n"
    fields = _fields(block)
    if fields and not fields[-1].endswith(b"\n"):
        fields[-1] += eol
    out: list[bytes] = []
    if header is not None:
        out.append(_fold(HEADER_NAME, " ".join(header.split()), eol))
    found_subject = False
    for field in fields:
        name = _name(field)
        if header is not None and name == HEADER_NAME.lower().encode():
            continue  # the sender's own: never passed on beside ours
        if subject_prefix is not None and name == b"subject" and not found_subject:
            found_subject = True
            field = _prefixed(field, subject_prefix.strip())
        out.append(field)
    if subject_prefix is not None and not found_subject:
        prefix = subject_prefix.strip()
        out.append(b"Subject: " + (prefix.encode() if prefix.isascii() else _encoded(prefix)) + eol)
    return b"".join(out) + (sep or eol) + body

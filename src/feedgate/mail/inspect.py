"""The inspector: what one RFC 5322 message offers to match, and what it could not look at.

One parse with the standard library (``policy.default``), one walk over the parts. Headers give
the connecting IP, the senders and the subject; text bodies and text attachments give URLs;
every other leaf (attachments, inline images, parts of attached messages) and every member of a
zip in it gives its hashes. Malformed mail is the normal case for a filter: no input raises,
and whatever a limit or a broken part cut short is listed in :attr:`Inspection.skipped`.
"""

from __future__ import annotations

import email
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from pathlib import Path
from typing import Any, Final

from feedgate.mail import limits
from feedgate.mail._archives import is_zip, scan_zip
from feedgate.mail._collect import Collector
from feedgate.mail._headers import (
    decoded_subject,
    offer_addresses,
    offer_client_ip,
    received_client_ip,
    unfold,
)
from feedgate.mail._urls import UrlFinder
from feedgate.mail.model import Inspection, Part

__all__ = ["inspect_file", "inspect_message"]

_ADDRESS_PARTS: Final = {"from": Part.FROM, "sender": Part.SENDER, "reply-to": Part.REPLY_TO}
_TEXT_BODIES: Final = frozenset({"text/plain", "text/html"})
# Charsets that promise ASCII: 8-bit text under them is read as UTF-8 (its common truth).
_ASCII_CHARSETS: Final = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968"})


#: The MIME headers the parser and the walk look up again and again (the parser alone reads a
#: part's Content-Type four to six times, each a full parse of its grammar).
_MIME_HEADERS: Final = frozenset(
    {"content-type", "content-disposition", "content-transfer-encoding"}
)
#: Parsed MIME headers by name and raw value, shared by the messages of a process (the same
#: ``text/plain; charset=utf-8`` comes in most of them); bounded, emptied when full.
_PARSED: Final[dict[tuple[str, str], Any]] = {}
_CACHED_HEADERS: Final = 4096
_CACHED_HEADER_CHARS: Final = 1024


class _ReadOncePolicy(EmailPolicy):
    """``policy.default``, with each MIME header value parsed once.

    ``header_fetch_parse`` is a pure function of the header's name and raw value, and the
    header objects it returns are immutable, so one parse can answer every lookup: the
    stdlib's ``get_content_type``, ``get_param``, ``get_content_maintype`` and the parser's own
    calls to them otherwise parse Content-Type anew each time, the largest cost of a walk.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if value.__class__ is not str or len(value) > _CACHED_HEADER_CHARS:
            return super().header_fetch_parse(name, value)
        key = (name, value)
        parsed = _PARSED.get(key)
        if parsed is None:
            parsed = super().header_fetch_parse(name, value)
            if name.lower() in _MIME_HEADERS:
                if len(_PARSED) >= _CACHED_HEADERS:
                    _PARSED.clear()
                _PARSED[key] = parsed
        return parsed


_POLICY: Final = _ReadOncePolicy()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 160 else text[:160] + "…"


def inspect_file(
    path: Path | str, *, client_ip: str | None = None, envelope_from: str | None = None
) -> Inspection:
    """:func:`inspect_message` of the message in file ``path`` (an .eml: the raw message)."""
    return inspect_message(
        Path(path).read_bytes(), client_ip=client_ip, envelope_from=envelope_from
    )


def inspect_message(
    raw: bytes, *, client_ip: str | None = None, envelope_from: str | None = None
) -> Inspection:
    """What the message ``raw`` offers to match.

    ``client_ip`` and ``envelope_from`` are what an SMTP session knows (the peer, MAIL FROM);
    for a message read from a file they come from its first Received header and its
    Return-Path instead.
    """
    out = Collector()
    try:
        message = email.message_from_bytes(raw, policy=_POLICY)
    except Exception as exc:  # RecursionError on absurd nesting, and whatever else the parser hits
        out.skip("message", f"body could not be parsed ({_reason(exc)}): only headers read")
        try:
            message = BytesParser(policy=_POLICY).parsebytes(raw, headersonly=True)
        except Exception as again:
            out.skip("message", f"headers could not be parsed: {_reason(again)}")
            _offer_session(client_ip, envelope_from, out)
            return out.inspection(None, None)
    return _Inspector(out).run(message, client_ip, envelope_from)


def _offer_session(client_ip: str | None, envelope_from: str | None, out: Collector) -> None:
    if client_ip is not None:
        offer_client_ip(client_ip, client_ip, out)
    if envelope_from:
        offer_addresses([envelope_from], Part.ENVELOPE_FROM, out)


class _Inspector:
    """One message's walk: headers first, then every part, within the limits."""

    __slots__ = ("_out", "_parts", "_urls")

    def __init__(self, out: Collector) -> None:
        self._out = out
        self._urls = UrlFinder(out)
        self._parts = 0

    def run(self, message: Message, client_ip: str | None, envelope_from: str | None) -> Inspection:
        out = self._out
        received: str | None = None
        return_path: str | None = None
        addresses: dict[str, list[str]] = {}
        subject: str | None = None
        message_id: str | None = None
        for name, value in message.raw_items():
            key = name.lower()
            if key == "received":
                if received is None:
                    received = str(value)
            elif key in _ADDRESS_PARTS:
                addresses.setdefault(key, []).append(unfold(str(value), key, out))
            elif key == "subject":
                if subject is None:
                    subject = decoded_subject(unfold(str(value), key, out))
            elif key == "message-id":
                if message_id is None:
                    message_id = unfold(str(value), key, out)[: limits.MAX_SUBJECT_CHARS]
            elif key == "return-path" and return_path is None:
                return_path = unfold(str(value), key, out)

        if client_ip is not None:
            offer_client_ip(client_ip, client_ip, out)
        elif received is not None:
            ip = received_client_ip(unfold(received, "received", out))
            if ip is not None:
                offer_client_ip(ip, ip, out)
        sender = envelope_from if envelope_from is not None else return_path
        if sender:
            offer_addresses([sender], Part.ENVELOPE_FROM, out)
        for key, values in addresses.items():
            offer_addresses(values, _ADDRESS_PARTS[key], out)
        if subject:
            self._urls.scan_text(subject)
        self._walk(message, 0, "1")
        shown = subject[: limits.MAX_SUBJECT_CHARS] if subject is not None else None
        return out.inspection(message_id or None, shown)

    def _walk(self, part: Message, depth: int, path: str) -> None:
        out = self._out
        self._parts += 1
        if self._parts > limits.MAX_PARTS:
            if self._parts == limits.MAX_PARTS + 1:
                out.skip("message", f"more than {limits.MAX_PARTS} parts: the rest not looked at")
            return
        try:
            ctype = part.get_content_type()
            if part.is_multipart():
                self._container(part, ctype, depth, path)
            else:
                self._leaf(part, ctype, path)
        except Exception as exc:  # a part the library cannot read must not end the inspection
            out.skip(f"part {path}", f"could not be read: {_reason(exc)}")

    def _container(self, part: Message, ctype: str, depth: int, path: str) -> None:
        if depth >= limits.MAX_NESTING:
            self._out.skip(
                f"part {path}", f"nested deeper than {limits.MAX_NESTING} levels: not looked at"
            )
            return
        children = part.get_payload()
        if not isinstance(children, list):
            return
        for index, child in enumerate(children, 1):
            if not isinstance(child, Message):
                continue
            if ctype in ("message/rfc822", "message/global"):
                self._inner_subject(child)
            self._walk(child, depth + 1, f"{path}.{index}")
            if self._parts > limits.MAX_PARTS:
                return

    def _inner_subject(self, inner: Message) -> None:
        for name, value in inner.raw_items():
            if name.lower() == "subject":
                self._urls.scan_text(decoded_subject(unfold(str(value), "subject", self._out)))
                return

    def _leaf(self, part: Message, ctype: str, path: str) -> None:
        out = self._out
        encoded = part.get_payload()
        if not isinstance(encoded, str):
            return
        if len(encoded) > limits.MAX_PART_BYTES:
            out.skip(
                _label(part, ctype, path),
                f"part of {len(encoded)} bytes (limit {limits.MAX_PART_BYTES}): not decoded",
            )
            return
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            return
        # A multipart the parser could not split (a broken boundary) is text, not a file.
        text_body = ctype.startswith("multipart/") or (
            ctype in _TEXT_BODIES and part.get_content_disposition() != "attachment"
        )
        label = "" if text_body else _label(part, ctype, path)
        if not out.spend(len(data), label or f"part {path} ({ctype})"):
            return
        if not text_body:
            out.add_hashes(data, label)
            if is_zip(data):
                scan_zip(data, label, out)
        if (ctype.startswith(("text/", "multipart/"))) and not self._urls.full:
            self._scan_text(part, ctype, data, label or f"part {path} ({ctype})")

    def _scan_text(self, part: Message, ctype: str, data: bytes, label: str) -> None:
        if len(data) > limits.MAX_TEXT_SCAN_BYTES:
            self._out.skip(
                label,
                f"only the first {limits.MAX_TEXT_SCAN_BYTES} bytes searched for URLs",
            )
            data = data[: limits.MAX_TEXT_SCAN_BYTES]
        text = _decode(data, part.get_content_charset())
        if ctype == "text/html":
            self._urls.scan_html(text)
        else:
            self._urls.scan_text(text)


def _decode(data: bytes, charset: str | None) -> str:
    """Text of a part in its declared charset; unknown or lying charsets read as UTF-8."""
    if charset and charset not in _ASCII_CHARSETS:
        try:
            return data.decode(charset, "replace")
        except Exception:  # LookupError, or a codec (idna, punycode) refusing "replace"
            pass
    return data.decode("utf-8", "replace")


def _label(part: Message, ctype: str, path: str) -> str:
    """How an admin finds a part: its file name, else its position and type."""
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name:
        name = " ".join(str(name).split())
        return name if len(name) <= 200 else name[:200] + "…"
    return f"part {path} ({ctype})"

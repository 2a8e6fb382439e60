"""The Content rule: how a payload travels inside a TAXII element of "any mixed content" type.

``Content``, ``Extended_Header``, a 1.1 status ``Detail`` and ``Query`` may hold text or XML. The
peers (libtaxii, cabby, OpenTAXII) agree on one convention, which we follow so that what they
send we read and what we send they read:

* writing: a payload that *is* an XML document (it parses as one element) goes in as a child
  element, so a STIX package is embedded, not escaped; anything else goes in as text;
* reading: an element child comes out as that child serialised on its own (lxml makes the
  namespace declarations it inherits explicit, so the bytes stand alone); otherwise the text.

Payloads are kept as ``bytes`` (UTF-8 when they are text) so a block's content can be handed to
the STIX reader without decoding and re-encoding.
"""

from __future__ import annotations

import re
from typing import Final

from lxml import etree

from ..xml import XMLParseError, parse_bytes
from ._errors import TAXIIMessageError

#: What a content payload may be given as; it is stored as bytes.
ContentLike = bytes | bytearray | memoryview | str | etree._Element

_XML_DECLARATION: Final = re.compile(r"\A\s*<\?xml\s[^>]*\?>")


def content_bytes(value: ContentLike) -> bytes:
    """Normalise a payload to bytes.

    A ``str`` loses a leading XML declaration: once encoded as UTF-8 its ``encoding=`` would no
    longer be true. An lxml element is serialised on its own (without its tail).
    """
    if isinstance(value, etree._Element):
        return etree.tostring(value, encoding="utf-8", with_tail=False)
    if isinstance(value, str):
        return _XML_DECLARATION.sub("", value, count=1).encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"content must be bytes, str or an lxml element, not {type(value).__name__}")


def _as_element(value: bytes) -> etree._Element | None:
    """The payload as a parsed element if it is a whole XML document, else None.

    Parsing goes through the hardened parser: a payload with a DOCTYPE is not XML to us, so it
    is written as escaped text and can do no harm to whoever reads it.
    """
    if value.lstrip()[:1] != b"<":
        return None
    try:
        return parse_bytes(value, max_bytes=max(len(value), 1))
    except XMLParseError:
        return None


def put_mixed(elem: etree._Element, value: bytes, where: str) -> None:
    """Store ``value`` in ``elem`` following the Content rule."""
    child = _as_element(value)
    if child is not None:
        elem.append(child)
        return
    try:
        elem.text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise TAXIIMessageError(f"{where}: content is neither XML nor UTF-8 text") from None
    except ValueError:  # lxml refuses control characters and other non-XML characters
        raise TAXIIMessageError(f"{where}: content has characters XML cannot carry") from None


def get_mixed(elem: etree._Element) -> bytes:
    """Read ``elem`` following the Content rule: its first element child, else its text."""
    for child in elem:
        if isinstance(child.tag, str):
            return etree.tostring(child, encoding="utf-8", with_tail=False)
    return (elem.text or "").encode("utf-8")

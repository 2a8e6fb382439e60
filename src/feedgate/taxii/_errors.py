"""The one exception type of the TAXII message layer."""

from __future__ import annotations


class TAXIIMessageError(ValueError):
    """A TAXII message is wrong: an unknown root element, a missing required element or
    attribute, a value of the wrong type, or a field the chosen TAXII version cannot carry.

    It derives from ``ValueError`` so that callers treating "bad input" generically still catch
    it. Errors about the XML itself (not well-formed, DOCTYPE, size limits) are not wrapped: they
    arrive as :class:`feedgate.xml.XMLParseError` and its subclasses, because they are a different
    problem (hostile or broken transport) from a well-formed message that breaks the TAXII rules.
    """

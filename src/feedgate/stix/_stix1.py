"""Streaming reader of STIX 1.0–1.2 packages, bare CybOX documents and TAXII 1.x messages.

The input is parsed with :func:`feedgate.xml.iterparse` filtered on the few elements that delimit
work (STIX_Package, CybOX Observables documents, TAXII Content_Block and Status_Message), so
libxml2 builds each package's subtree in C and Python only visits what it needs. Each package is
processed as soon as it ends and then cleared, so memory stays flat whatever the input size.

What counts as an indicator value (design.md): observables inside indicators (inline, in
compositions at any depth, or by idref to observables elsewhere in the package) and observables
at package level. Observables that only incidents, TTPs or other context refer to are not read.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from typing import IO, Any, Final

from lxml import etree

from feedgate import xml
from feedgate.observables import (
    InvalidValue,
    Kind,
    LayeredContext,
    Observable,
    normalise,
    normalise_ip_range,
)

from . import _cybox
from ._cybox import (
    CYBOX,
    T_COMPOSITION,
    T_OBJECT,
    T_OBSERVABLE,
    T_PROPERTIES,
    Candidate,
    KindHint,
    local,
)
from ._errors import StixReadError, TaxiiStatusError
from ._stats import ReadStats
from ._stix2 import read_stix2

STIX: Final = "http://stix.mitre.org/stix-1"
STIX_COMMON: Final = "http://stix.mitre.org/common-1"
INDICATOR: Final = "http://stix.mitre.org/Indicator-2"
CYBOX_COMMON: Final = "http://cybox.mitre.org/common-2"
TAXII_11: Final = "http://taxii.mitre.org/messages/taxii_xml_binding-1.1"
TAXII_10: Final = "http://taxii.mitre.org/messages/taxii_xml_binding-1"

T_PACKAGE: Final = f"{{{STIX}}}STIX_Package"
T_NESTED_PACKAGE: Final = f"{{{STIX}}}Package"
T_CYBOX_DOCUMENT: Final = f"{{{CYBOX}}}Observables"
T_PKG_OBSERVABLES: Final = f"{{{STIX}}}Observables"
T_HEADER: Final = f"{{{STIX}}}STIX_Header"
T_IND_OBSERVABLE: Final = f"{{{INDICATOR}}}Observable"
_BLOCKS: Final = (f"{{{TAXII_11}}}Content_Block", f"{{{TAXII_10}}}Content_Block")
_STATUS: Final = (f"{{{TAXII_11}}}Status_Message", f"{{{TAXII_10}}}Status_Message")
_INDICATOR_TAGS: Final = (
    f"{{{STIX}}}Indicator",
    f"{{{STIX_COMMON}}}Indicator",
    f"{{{INDICATOR}}}Indicator",
)
_PACKAGE_TAGS: Final = frozenset({T_PACKAGE, T_NESTED_PACKAGE})
#: What read_package looks for in a package, in one walk.
_WALK_TAGS: Final = (*_INDICATOR_TAGS, T_PKG_OBSERVABLES, T_NESTED_PACKAGE)
_STREAM_TAGS: Final = (T_PACKAGE, T_CYBOX_DOCUMENT, *_BLOCKS, *_STATUS)

#: Root elements (local names) a STIX or TAXII input may start with.
KNOWN_ROOTS: Final = frozenset(
    {
        "STIX_Package",
        "Observables",
        "Poll_Response",
        "Inbox_Message",
        "Status_Message",
        xml.WRAPPER_TAG,
    }
)
_MAX_COMPOSITION_DEPTH: Final = 64
#: Whether readers use the fast path for the common shape of observable (the general path
#: gives the same output; tests compare the two).
FAST_PATH = True
#: The largest package or content block read (a package is held whole while it is read, and
#: takes several times its size in memory): this is what bounds the reader's memory.
MAX_UNIT_BYTES = 256 * 1024**2
#: A bound on what one package may yield, whatever its references do.
MAX_OBSERVABLES_PER_PACKAGE: Final = 1_000_000
#: How much of a text content block is sniffed for its root element.
_HEAD: Final = 64 * 1024


_T_RELATED_OBJECTS: Final = _cybox.T_RELATED_OBJECTS
_children: Final = _cybox.children
_simple_candidate: Final = _cybox.simple_candidate
_new_observable: Final = tuple.__new__


class _Package:
    """Per-package state: its context and, built lazily on the first idref, its id index."""

    __slots__ = ("consumed", "context", "elem", "index", "outer", "track_consumed")

    def __init__(
        self,
        elem: etree._Element,
        context: dict[str, Any],
        outer: _Package | None = None,
        track_consumed: bool | None = None,
    ) -> None:
        self.elem = elem
        #: For a package nested in another: the outermost one, whose index covers both.
        self.outer = outer
        self.context = context
        self.index: dict[str, etree._Element] | None = None
        self.consumed: set[str] = set()
        #: Package-level observables that an indicator already read are not read again; only
        #: worth tracking when the package has any (a caller that already looked says so).
        if track_consumed is None:
            track_consumed = elem.find(f".//{T_PKG_OBSERVABLES}") is not None
        self.track_consumed = track_consumed

    def resolve(self, idref: str) -> etree._Element | None:
        if self.outer is not None:
            return self.outer.resolve(idref)
        if self.index is None:
            self.index = {}
            for el in self.elem.iter(T_OBSERVABLE, T_OBJECT, _cybox.T_RELATED_OBJECT):
                ident = el.get("id")
                if ident and (len(el) or ident not in self.index):
                    self.index[ident] = el
        return self.index.get(idref)


def _child(parent: etree._Element, tag: str) -> etree._Element | None:
    """The first child of ``parent`` with ``tag`` (what ``parent.find(tag)`` finds, without
    compiling a path)."""
    for child in _children(parent):
        if child.tag == tag:
            return child
    return None


def _text(parent: etree._Element | None, *path: str) -> str | None:
    """Stripped text at ``path`` under ``parent`` (tags in Clark notation), or None."""
    elem = parent
    for tag in path:
        if elem is None:
            return None
        elem = _child(elem, tag)
    return _own_text(elem)


def _own_text(elem: etree._Element | None) -> str | None:
    """The stripped text of ``elem``, or None when it has none."""
    if elem is None:
        return None
    text = elem.text
    if text is None:
        return None
    return text.strip() or None


_T_HANDLING: Final = f"{{{STIX}}}Handling"
_T_MARKING_STRUCTURE: Final = "{http://data-marking.mitre.org/Marking-1}Marking_Structure"


def _tlp(handling_parent: etree._Element) -> str | None:
    handling = _child(handling_parent, _T_HANDLING)
    if handling is None:
        handling = _child(handling_parent, f"{{{INDICATOR}}}Handling")
    return _tlp_of(handling)


def _tlp_of(handling: etree._Element | None) -> str | None:
    """The colour of the first TLP marking under a Handling element."""
    if handling is None:
        return None
    for structure in handling.iter(_T_MARKING_STRUCTURE):
        color = structure.get("color")
        if color:
            return color.lower()
    return None


_T_TITLE: Final = f"{{{STIX}}}Title"
_T_DESCRIPTION: Final = f"{{{STIX}}}Description"
_T_SHORT_DESCRIPTION: Final = f"{{{STIX}}}Short_Description"
_T_INFORMATION_SOURCE: Final = f"{{{STIX}}}Information_Source"
_HEADER_PARTS: Final = frozenset(
    {
        _T_TITLE,
        _T_DESCRIPTION,
        _T_SHORT_DESCRIPTION,
        _T_INFORMATION_SOURCE,
        _T_HANDLING,
        f"{{{INDICATOR}}}Handling",
    }
)


def package_context(pkg: etree._Element) -> dict[str, Any]:
    """Context shared by every observable of a package: id, title, producer time, TLP."""
    ctx: dict[str, Any] = {}
    ident = pkg.get("id")
    if ident:
        ctx["package_id"] = ident
    header = _child(pkg, T_HEADER)
    if header is not None:
        # One pass over the header's children: the first of each part, as find() would see.
        first: dict[str, etree._Element] = {}
        for child in _children(header):
            tag = child.tag
            if tag in _HEADER_PARTS and tag not in first:
                first[tag] = child
        title = _own_text(first.get(_T_TITLE))
        if title:
            ctx["package_title"] = title
        description = _own_text(first.get(_T_DESCRIPTION))
        if description:
            ctx["package_description"] = description
        short = _own_text(first.get(_T_SHORT_DESCRIPTION))
        if short:
            ctx["package_short_description"] = short
        produced = _text(
            first.get(_T_INFORMATION_SOURCE),
            f"{{{STIX_COMMON}}}Time",
            f"{{{CYBOX_COMMON}}}Produced_Time",
        )
        if produced:
            ctx["produced"] = produced
        tlp = _tlp_of(first.get(_T_HANDLING, first.get(f"{{{INDICATOR}}}Handling")))
        if tlp:
            ctx["tlp"] = tlp
    if "produced" not in ctx and pkg.get("timestamp"):
        ctx["produced"] = pkg.get("timestamp")
    return ctx


_IND_TITLE: Final = f"{{{INDICATOR}}}Title"
_IND_TYPE: Final = f"{{{INDICATOR}}}Type"
_IND_DESCRIPTION: Final = f"{{{INDICATOR}}}Description"
_IND_CONFIDENCE: Final = f"{{{INDICATOR}}}Confidence"
_IND_VALID_TIME: Final = f"{{{INDICATOR}}}Valid_Time_Position"
_IND_HANDLING: Final = f"{{{INDICATOR}}}Handling"
_IND_START: Final = f"{{{INDICATOR}}}Start_Time"
_IND_END: Final = f"{{{INDICATOR}}}End_Time"
_CONFIDENCE_VALUE: Final = f"{{{STIX_COMMON}}}Value"


def indicator_context(
    ind: etree._Element, base: dict[str, Any], observables: list[etree._Element]
) -> LayeredContext:
    """``base`` (the package's context, shared, not copied) under the indicator's own: id,
    title, types, description, confidence, valid time. The indicator's Observable children are
    collected into ``observables`` on the same pass over its children.

    A package context never holds the keys an indicator sets only once (``description``,
    ``valid_from``, ``valid_until``), so looking for them in the indicator's own keys is the
    same as looking in the whole context."""
    return _indicator_context(ind, _children(ind), ind.get("id"), base, observables)


def _indicator_context(
    ind: etree._Element,
    children: list[etree._Element],
    ident: str | None,
    base: dict[str, Any],
    observables: list[etree._Element],
) -> LayeredContext:
    """:func:`indicator_context`, given the indicator's children and id (its caller has them)."""
    ctx: dict[str, Any] = {}
    if ident:
        ctx["indicator_id"] = ident
    types: list[str] | None = None
    for child in children:
        tag = child.tag
        if tag == T_IND_OBSERVABLE:
            observables.append(child)
        elif tag == _IND_TITLE:
            text = child.text
            if text and (text := text.strip()):
                ctx["indicator_title"] = text
        elif tag == _IND_DESCRIPTION:
            text = child.text
            if text and (text := text.strip()) and "description" not in ctx:
                ctx["description"] = text
        elif tag == _IND_TYPE:
            text = child.text
            if text and (text := text.strip()):
                if types is None:
                    types = [text]
                else:
                    types.append(text)
        elif tag == _IND_CONFIDENCE:
            value = _text(child, _CONFIDENCE_VALUE)
            if value:
                ctx["confidence"] = value
        elif tag == _IND_VALID_TIME:
            start = _text(child, _IND_START)
            end = _text(child, _IND_END)
            if start and "valid_from" not in ctx:
                ctx["valid_from"] = start
            if end and "valid_until" not in ctx:
                ctx["valid_until"] = end
        elif tag == _IND_HANDLING:
            tlp = _tlp(ind)
            if tlp:
                ctx["tlp"] = tlp
    if types:
        ctx["indicator_type"] = "; ".join(types)
    timestamp = ind.get("timestamp")
    if timestamp:
        ctx["indicator_timestamp"] = timestamp
    return LayeredContext(base, ctx)


def _only_child(parent: etree._Element, tag: str, refused: str) -> etree._Element | None:
    """``parent``'s one child ``tag``, or None if it has none, several, or a ``refused`` one."""
    found = None
    for child in _children(parent):
        child_tag = child.tag
        if child_tag == tag:
            if found is not None:
                return None
            found = child
        elif child_tag == refused:
            return None
    return found


class _PackageReader:
    """Turns one package element (already fully parsed) into Observables.

    Methods append to an output list rather than yield: a package is small and fully parsed by
    the time we see it, and five levels of nested generators cost more than the work itself.
    """

    def __init__(self, stats: ReadStats, *, fast: bool | None = None) -> None:
        self.stats = stats
        #: Read the common shape of observable with the fast path (tests turn it off to
        #: compare both paths).
        self.fast = FAST_PATH if fast is None else fast
        #: ids read for the current indicator: each referenced observable or object is read
        #: once, so a chain of compositions that reference each other twice cannot fan out.
        self._visited: set[str] = set()

    # -- entry points -------------------------------------------------------------------------

    def read_package(self, pkg_elem: etree._Element) -> list[Observable]:
        stats = self.stats
        stats.packages += 1
        out: list[Observable] = []
        # One walk over the package finds its indicators, its package-level observables and
        # whether it nests packages (in document order, as separate walks would).
        indicators: list[etree._Element] = []
        pkg_observables: list[etree._Element] = []
        nested = False
        for elem in pkg_elem.iter(_WALK_TAGS):
            tag = elem.tag
            if tag == T_PKG_OBSERVABLES:
                pkg_observables.append(elem)
            elif tag == T_NESTED_PACKAGE:
                nested = True
            else:
                indicators.append(elem)
        root = _Package(pkg_elem, package_context(pkg_elem), track_consumed=bool(pkg_observables))
        packages: dict[etree._Element, _Package] = {pkg_elem: root}
        seen_indicators: set[str] = set()
        fast = self.fast
        for ind in indicators:
            children = _children(ind)
            if not children:
                continue  # an idref to an indicator defined elsewhere in the package
            ident = ind.get("id")
            if ident:
                if ident in seen_indicators:
                    continue
                seen_indicators.add(ident)
            stats.indicators += 1
            owner = self._owner(ind, packages, root) if nested else root
            ind_observables: list[etree._Element] = []
            ctx = _indicator_context(ind, children, ident, owner.context, ind_observables)
            several = len(ind_observables) > 1
            if fast and not several:
                # The common case: one observable (or none). Its ids need remembering only if
                # the general path reads it.
                for obs in ind_observables:
                    if not self._fast_observable(out, obs, ctx, owner, False):
                        self._visited = set()
                        self._observable(out, obs, ctx, owner, 0, None)
                continue
            self._visited = set()
            for obs in ind_observables:
                if not (fast and self._fast_observable(out, obs, ctx, owner, several)):
                    self._observable(out, obs, ctx, owner, 0, None)
        context_only = _context_references(pkg_elem) if root.track_consumed else set()
        for observables in pkg_observables:
            parent = observables.getparent()
            if parent is None or parent.tag not in _PACKAGE_TAGS:
                continue
            owner = self._owner(observables, packages, root)
            for obs in observables.iterchildren(T_OBSERVABLE):
                ident = obs.get("id")
                if ident and ident in root.consumed:
                    continue
                if ident and ident in context_only:
                    stats.skip("observable of an incident, TTP or other context, not an indicator")
                    continue
                self._visited = set()
                if not (fast and self._fast_observable(out, obs, owner.context, owner, False)):
                    self._observable(out, obs, owner.context, owner, 0, None)
        return out

    def read_cybox_document(self, doc: etree._Element) -> list[Observable]:
        """A bare ``cybox:Observables`` document: every observable in it, no package context."""
        out: list[Observable] = []
        pkg = _Package(doc, {})
        fast = self.fast
        for obs in doc.iterchildren(T_OBSERVABLE):
            self._visited = set()
            if not (fast and self._fast_observable(out, obs, {}, pkg, False)):
                self._observable(out, obs, {}, pkg, 0, None)
        return out

    # -- the common shape ---------------------------------------------------------------------

    def _fast_observable(
        self,
        out: list[Observable],
        obs: etree._Element,
        ctx: Mapping[str, Any],
        pkg: _Package,
        several: bool,
    ) -> bool:
        """Read ``obs`` if it has the common shape, as :meth:`_observable` would; False (having
        changed nothing) when it does not, and the general path must read it.

        The common shape: an inline observable, not negated, holding one inline object (no
        composition, no idref, no related objects) with one ``Properties`` that
        :func:`_cybox.simple_candidate` reads as one exact value of a simple type, which
        normalises without error. Everything is checked before anything is counted or
        emitted, so a fallback starts from the same state. ``several`` says whether the
        indicator has other observables (then object ids must be remembered as the general
        path does; alone, nothing after it could see them).
        """
        negate = obs.get("negate")
        if negate is not None and (negate == "true" or negate == "1"):
            return False
        obj = _only_child(obs, T_OBJECT, T_COMPOSITION)
        if obj is None:
            return False  # an idref (no children), nothing to read, or more than the shape
        props = _only_child(obj, T_PROPERTIES, _T_RELATED_OBJECTS)
        if props is None:
            return False  # includes an object by idref (it has no children)
        found = _simple_candidate(props)
        if found is None:
            return False
        hint, value, original = found
        if len(out) >= MAX_OBSERVABLES_PER_PACKAGE:
            return False
        try:  # what _emit does with Candidate(hint, value, original)
            normal = normalise(_value_kind(hint, value), value)
        except InvalidValue:
            return False  # the general path counts it with its reason
        # From here on the observable is read: the general path's side effects, in its order.
        if pkg.track_consumed:
            ident = obs.get("id")
            if ident:
                pkg.consumed.add(ident)
        if several:
            ident = obj.get("id")
            if ident:
                visited = self._visited
                if ident in visited:
                    return True  # read already for this indicator
                visited.add(ident)
        kind, norm = normal
        self.stats.by_kind[kind] += 1
        out.append(
            _new_observable(Observable, (kind, norm, original if kind is Kind.OTHER else None, ctx))
        )
        return True

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _owner(
        elem: etree._Element, packages: dict[etree._Element, _Package], root: _Package
    ) -> _Package:
        """The nearest enclosing package (MISP nests events as Related_Packages)."""
        parent = elem.getparent()
        while parent is not None:
            if parent is root.elem:
                return root
            if parent.tag == T_NESTED_PACKAGE:
                found = packages.get(parent)
                if found is None:
                    context = {**root.context, **package_context(parent)}
                    found = _Package(parent, context, outer=root)
                    found.consumed = root.consumed
                    found.track_consumed = root.track_consumed
                    packages[parent] = found
                return found
            parent = parent.getparent()
        return root

    def _observable(
        self,
        out: list[Observable],
        obs: etree._Element,
        ctx: Mapping[str, Any],
        pkg: _Package,
        depth: int,
        operator: str | None,
    ) -> None:
        stats = self.stats
        if depth > _MAX_COMPOSITION_DEPTH:
            stats.skip("observable composition nested too deeply")
            return
        if len(obs) == 0:
            idref = obs.get("idref")
            if not idref:
                return
            if idref in self._visited:
                return  # already read for this indicator (a reference cycle or fan-in)
            self._visited.add(idref)
            target = pkg.resolve(idref)
            if target is None:
                stats.skip("idref to an observable not in the package", repr(idref[:200]))
                return
            obs = target
        if pkg.track_consumed:
            ident = obs.get("id")
            if ident:
                pkg.consumed.add(ident)
        if obs.get("negate") in ("true", "1"):
            stats.skip("negated observable (describes what is NOT malicious)")
            return
        for child in obs:
            tag = child.tag
            if tag == T_OBJECT:
                self._object(out, child, ctx, pkg, operator, depth)
            elif tag == T_COMPOSITION:
                op = child.get("operator", "AND")
                for sub in child.iterchildren(T_OBSERVABLE):
                    self._observable(out, sub, ctx, pkg, depth + 1, op)

    def _object(
        self,
        out: list[Observable],
        obj: etree._Element,
        ctx: Mapping[str, Any],
        pkg: _Package,
        operator: str | None,
        depth: int,
    ) -> None:
        stats = self.stats
        if len(obj) == 0 and obj.get("idref"):
            idref = obj.get("idref", "")
            target = pkg.resolve(idref)
            if target is None:
                stats.skip("idref to an object not in the package", repr(idref[:200]))
                return
            obj = target
        ident = obj.get("id")
        if ident:
            if ident in self._visited:
                return  # read already for this indicator (e.g. a link both related and referenced)
            self._visited.add(ident)
        related = None
        for child in obj:
            tag = child.tag
            if tag == T_PROPERTIES:
                context = ctx if operator is None else _with_composition(ctx, operator)
                type_name = _cybox.xsi_type(child)
                for cand in _cybox.properties_candidates(child, stats, type_name):
                    self._emit(out, cand, context)
                # Only e-mail messages point at their links and attachments by reference.
                if type_name.startswith("EmailMessage") and depth < _MAX_COMPOSITION_DEPTH:
                    for ref in _cybox.object_references(child):
                        target = pkg.resolve(ref)
                        if target is None:
                            stats.skip(
                                "object_reference to an object not in the package", repr(ref[:200])
                            )
                        else:
                            self._object(out, target, ctx, pkg, operator, depth + 1)
            elif tag == _cybox.T_RELATED_OBJECTS:
                related = child
        if related is not None and depth < _MAX_COMPOSITION_DEPTH:
            for rel in related.iterchildren(_cybox.T_RELATED_OBJECT):
                self._object(out, rel, ctx, pkg, operator, depth + 1)

    def _emit(self, out: list[Observable], cand: Candidate, context: Mapping[str, Any]) -> None:
        if len(out) >= MAX_OBSERVABLES_PER_PACKAGE:
            self.stats.skip(
                f"package over {MAX_OBSERVABLES_PER_PACKAGE} observables (rest left out)"
            )
            return
        hint, value, original, range_end = cand
        try:
            if range_end is not None:
                pairs = normalise_ip_range(value, range_end)
            else:
                kind, norm = normalise(_value_kind(hint, value), value)
                self.stats.by_kind[kind] += 1
                out.append(
                    Observable(kind, norm, original if kind is Kind.OTHER else None, context)
                )
                return
        except InvalidValue as exc:
            label = "address" if hint == "auto" else str(hint)
            self.stats.skip(f"invalid {label} value", str(exc))
            return
        for kind, norm in pairs:
            self.stats.by_kind[kind] += 1
            out.append(Observable(kind, norm, original if kind is Kind.OTHER else None, context))


def _with_composition(ctx: Mapping[str, Any], operator: str) -> Mapping[str, Any]:
    """``ctx`` plus the operator of the composition an observable is part of."""
    if type(ctx) is LayeredContext:
        return LayeredContext(ctx.shared, {**ctx.own, "composition": operator})
    return {**ctx, "composition": operator}


#: Sections of a package whose observable references are context, not indicators.
_CONTEXT_SECTIONS: Final = tuple(
    f"{{{STIX}}}{name}"
    for name in (
        "Incidents",
        "TTPs",
        "Threat_Actors",
        "Campaigns",
        "Exploit_Targets",
        "Courses_Of_Action",
    )
)


def _context_references(pkg: etree._Element) -> set[str]:
    """ids that incidents, TTPs and other context sections refer to."""
    refs: set[str] = set()
    for section in pkg.iter(_CONTEXT_SECTIONS):
        for elem in section.iter():
            idref = elem.get("idref")
            if idref:
                refs.add(idref)
    return refs


def _value_kind(hint: KindHint, value: str) -> Kind:
    """The kind a candidate's value is normalised as. An Address without ``category``
    (``"auto"``) says by itself whether it is an e-mail address, a network or an IP; an IP
    address property with a network value is a network."""
    if isinstance(hint, Kind):
        if (hint is Kind.IPV4 or hint is Kind.IPV6) and "/" in value:
            return Kind.CIDR
        return hint
    if "@" in value:
        return Kind.EMAIL
    if "/" in value:
        return Kind.CIDR
    return Kind.IPV4


def _status_error(elem: etree._Element) -> TaxiiStatusError:
    status_type = elem.get("status_type", "UNKNOWN")
    message = ""
    for child in elem:
        if local(child.tag) == "Message" and child.text:
            message = child.text.strip()
    return TaxiiStatusError(status_type, message)


def _keep(elem: etree._Element) -> None:
    """A whole parsed document is freed as a whole: nothing to drop as it is read."""


def _drop_consumed(elem: etree._Element) -> None:
    """Free a consumed element and the siblings before it, so the tree never grows."""
    elem.clear()
    parent = elem.getparent()
    if parent is not None:
        while elem.getprevious() is not None:
            del parent[0]


def read_stix1(
    stream: IO[bytes],
    stats: ReadStats,
    *,
    max_bytes: int = xml.DEFAULT_MAX_BYTES,
    concatenated: bool = True,
    text_depth: int = 0,
    whole: bool = False,
) -> Iterator[Observable]:
    """Observables of a stream of STIX 1.x / CybOX / TAXII 1.x XML documents.

    ``concatenated`` accepts several documents in a row (what ``taxii-poll`` prints); callers
    that already hand over a single well-formed document skip that layer. Content blocks that
    carry their content as text (escaped XML, STIX 2 JSON) are read too, one level deep:
    ``text_depth`` counts how deep we already are. ``whole`` (with one document) parses it in
    one call instead of streaming: for parse workers, whose ranges are small.
    """
    reader = _PackageReader(stats)
    drop = _drop_consumed
    if whole and not concatenated:  # one document, parsed in one call (see xml.walk)
        events = xml.walk(stream.read(), tag=_STREAM_TAGS, max_bytes=max_bytes)
        drop = _keep
    else:
        source = xml.concatenated_documents(stream) if concatenated else stream
        events = xml.iterparse(
            source, tag=_STREAM_TAGS, max_bytes=max_bytes, max_between=MAX_UNIT_BYTES
        )
    for _event, elem in events:
        tag = elem.tag
        if tag == T_PACKAGE:
            yield from reader.read_package(elem)
            drop(elem)
        elif tag in _BLOCKS:
            stats.content_blocks += 1
            text = _block_text(elem)
            if text is not None:
                yield from _text_block(text, stats, text_depth)
            drop(elem)
        elif tag == T_CYBOX_DOCUMENT:
            parent = elem.getparent()
            if parent is None or local(parent.tag) in (xml.WRAPPER_TAG, "Content"):
                yield from reader.read_cybox_document(elem)
                drop(elem)
        elif tag in _STATUS:
            raise _status_error(elem)


_DECLARED_ENCODING: Final = re.compile(r"""^(<\?xml[^>]*?)\s+encoding\s*=\s*["'][^"']*["']""")


def _block_text(elem: etree._Element) -> str | None:
    """The stripped text of a content block's (first) Content, or None when that is empty or
    holds XML (whose package was read when it ended)."""
    for child in _children(elem):
        if local(child.tag) != "Content":
            continue
        if len(child):
            return None
        return (child.text or "").strip() or None
    return None


def _text_block(text: str, stats: ReadStats, text_depth: int) -> Iterator[Observable]:
    """A content block whose content is text: escaped XML, or JSON (STIX 2).

    A block that cannot be read is skipped and counted; it never costs the other blocks.
    """
    if text_depth > 0:
        stats.skip("text content inside text content (not read)")
        return
    # The text is already decoded; an encoding it declares no longer applies.
    data = _DECLARED_ENCODING.sub(r"\1", text, count=1).encode("utf-8")
    start = data[:1]
    try:
        if start == b"<":
            check_root(data[:_HEAD])
            yield from read_stix1(io.BytesIO(data), stats, text_depth=text_depth + 1)
        elif start in (b"{", b"["):
            yield from read_stix2(data, stats)
        else:
            stats.skip("content block that is neither XML nor JSON")
    except (StixReadError, xml.XMLParseError) as exc:
        stats.skip("unreadable text content block", f"{type(exc).__name__}: {exc}"[:300])


def check_root(head: bytes) -> None:
    """Refuse, early and clearly, an XML input whose root element is not STIX/CybOX/TAXII."""
    pos = xml._root_start(head)
    if pos < 0 or pos >= len(head) or head[pos + 1 : pos + 2] in (b"!", b"?"):
        return  # the prolog runs past what we sniffed: let the parser judge
    end = pos + 1
    while end < len(head) and end - pos < 200 and head[end : end + 1] not in b" \t\r\n/>":
        end += 1
    name = head[pos + 1 : end].decode("utf-8", "replace")
    localname = name.rpartition(":")[2]
    if localname and localname not in KNOWN_ROOTS:
        shown = name if len(name) <= 60 else name[:60] + "…"
        raise StixReadError(
            f"not STIX or TAXII: the document's root element is <{shown}>"
            " (expected STIX_Package, cybox Observables, Poll_Response or Inbox_Message)"
        )

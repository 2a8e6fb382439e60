"""STIX 2.1 JSON → Observables: indicators with simple patterns, and cyber-observable objects.

A gateway can only enforce a pattern that *is* a list of values: a single comparison
(``[ipv4-addr:value = '198.51.100.1']``) or an OR of such comparisons, within one observation
expression or across several (``[a] OR [b]``). ``IN ('x', 'y')`` is the same list spelled
differently and is accepted. Anything else (AND, MATCHES/LIKE, ``!=``, qualifiers such as
WITHIN or REPEATS, FOLLOWEDBY, NOT) describes a behaviour, not a value: the indicator is skipped
and the reason counted.

STIX 2 documents are JSON and read whole (bounded by ``max_bytes``): JSON bundles are small
compared with STIX 1.x poll responses, and a streaming JSON parser is not worth a dependency.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Final

from feedgate.observables import InvalidValue, Kind, Observable, normalise

from ._errors import StixReadError
from ._stats import ReadStats

#: (object type, property path) → kind, for comparisons and SCOs we can enforce.
_PATH_KINDS: Final[dict[str, Kind]] = {
    "ipv4-addr:value": Kind.IPV4,
    "ipv6-addr:value": Kind.IPV6,
    "domain-name:value": Kind.DOMAIN,
    "url:value": Kind.URL,
    "email-addr:value": Kind.EMAIL,
    "email-message:from_ref.value": Kind.EMAIL,
    "email-message:sender_ref.value": Kind.EMAIL,
}
_HASH_NAMES: Final[dict[str, Kind]] = {
    "md5": Kind.MD5,
    "sha-1": Kind.SHA1,
    "sha1": Kind.SHA1,
    "sha-256": Kind.SHA256,
    "sha256": Kind.SHA256,
}

_TOKEN_RE: Final = re.compile(
    r"""\s*(?:
        (?P<lbr>\[) | (?P<rbr>\]) | (?P<lpar>\() | (?P<rpar>\)) | (?P<comma>,) |
        (?P<str>'(?:[^'\\]|\\.)*') |
        (?P<op>=|!=|<=|>=|<|>) |
        (?P<word>[A-Za-z_][A-Za-z0-9_\-]*
            (?::[A-Za-z0-9_\-]+(?:\[(?:\*|\d+)\])?
                (?:\.(?:'[^']*'|[A-Za-z0-9_\-]+(?:\[(?:\*|\d+)\])?))*
            )?) |
        (?P<other>\S)
    )""",
    re.VERBOSE,
)


class _Unsupported(Exception):
    """A pattern we cannot turn into a list of values; the message is the counted reason."""


def _tokens(pattern: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(pattern):
        m = _TOKEN_RE.match(pattern, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup
        if kind is None:
            break
        out.append((kind, m.group(kind)))
    return out


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def pattern_comparisons(pattern: str) -> list[tuple[str, str]]:
    """The (object path, value) pairs of a pattern that is an OR of equality comparisons.

    Raises :class:`_Unsupported` with a short reason for any other shape.
    """
    tokens = _tokens(pattern)
    out: list[tuple[str, str]] = []
    i = 0
    expect_comparison = True
    depth = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "lbr":
            depth += 1
            i += 1
            continue
        if kind == "rbr":
            depth -= 1
            i += 1
            if depth < 0:
                raise _Unsupported("malformed pattern")
            continue
        if kind in ("lpar", "rpar"):
            i += 1
            continue
        if kind == "word" and text.upper() in ("OR",):
            if expect_comparison:
                raise _Unsupported("malformed pattern")
            expect_comparison = True
            i += 1
            continue
        if kind == "word" and text.upper() in (
            "AND",
            "FOLLOWEDBY",
            "WITHIN",
            "REPEATS",
            "START",
            "STOP",
            "NOT",
            "MATCHES",
            "LIKE",
            "ISSUBSET",
            "ISSUPERSET",
            "EXISTS",
        ):
            raise _Unsupported(f"pattern uses {text.upper()}")
        if kind == "word" and ":" in text and expect_comparison:
            path = text
            if i + 1 >= len(tokens):
                raise _Unsupported("malformed pattern")
            op_kind, op = tokens[i + 1]
            if op_kind == "word" and op.upper() == "IN":
                values, i = _in_list(tokens, i + 2)
                out.extend((path, v) for v in values)
            elif op_kind == "op" and op == "=":
                if i + 2 >= len(tokens) or tokens[i + 2][0] != "str":
                    raise _Unsupported("comparison with a non-string value")
                out.append((path, _unquote(tokens[i + 2][1])))
                i += 3
            elif op_kind == "word" and op.upper() in ("MATCHES", "LIKE", "NOT"):
                raise _Unsupported(f"pattern uses {op.upper()}")
            else:
                raise _Unsupported("a comparison that is not equality")
            expect_comparison = False
            continue
        raise _Unsupported("malformed pattern")
    if not out or depth != 0 or expect_comparison:
        raise _Unsupported("malformed pattern")
    return out


def _in_list(tokens: list[tuple[str, str]], i: int) -> tuple[list[str], int]:
    if i >= len(tokens) or tokens[i][0] != "lpar":
        raise _Unsupported("malformed IN list")
    values: list[str] = []
    i += 1
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "str":
            values.append(_unquote(text))
        elif kind == "rpar":
            return values, i + 1
        elif kind != "comma":
            raise _Unsupported("IN list with a non-string value")
        i += 1
    raise _Unsupported("malformed IN list")


def _path_kind(path: str) -> tuple[Kind, str | None]:
    """The kind for a pattern path; unknown paths are ``other`` with the path as their type."""
    kind = _PATH_KINDS.get(path)
    if kind is not None:
        return kind, None
    if path.startswith("file:hashes."):
        name = path[len("file:hashes.") :].strip("'").lower()
        hash_kind = _HASH_NAMES.get(name)
        if hash_kind is not None:
            return hash_kind, None
    if path.startswith("ipv4-addr:") or path.startswith("ipv6-addr:"):
        return Kind.OTHER, path
    return Kind.OTHER, path


def _indicator_context(obj: dict[str, Any]) -> dict[str, Any]:
    ctx: dict[str, Any] = {"indicator_id": obj.get("id")}
    for src, dst in (
        ("name", "indicator_title"),
        ("description", "description"),
        ("valid_from", "valid_from"),
        ("valid_until", "valid_until"),
        ("confidence", "confidence"),
        ("pattern", "pattern"),
        ("modified", "indicator_timestamp"),
    ):
        value = obj.get(src)
        if value is not None and value != "":
            ctx[dst] = value
    types = obj.get("indicator_types") or obj.get("labels")
    if isinstance(types, list) and types:
        ctx["indicator_type"] = "; ".join(str(t) for t in types)
    return ctx


def _emit(
    kind: Kind, value: Any, original: str | None, ctx: dict[str, Any], stats: ReadStats
) -> Iterator[Observable]:
    if not isinstance(value, str):
        stats.skip(f"invalid {kind} value", f"not a string: {value!r}"[:200])
        return
    try:
        if (kind is Kind.IPV4 and "/" in value) or (kind is Kind.IPV6 and "/" in value):
            kind, norm = normalise(Kind.CIDR, value)
        else:
            kind, norm = normalise(kind, value)
    except InvalidValue as exc:
        stats.skip(f"invalid {kind} value", str(exc))
        return
    stats.by_kind[kind] += 1
    yield Observable(kind, norm, original if kind is Kind.OTHER else None, ctx)


#: STIX 2.1 pattern-type-ov (a feed's own value never becomes a counter key).
_PATTERN_TYPES: Final = frozenset({"stix", "pcre", "sigma", "snort", "suricata", "yara"})


def _indicator(obj: dict[str, Any], ctx: dict[str, Any], stats: ReadStats) -> Iterator[Observable]:
    stats.indicators += 1
    if obj.get("revoked") is True:
        stats.skip("revoked indicator")
        return
    pattern_type = obj.get("pattern_type", "stix")
    pattern = obj.get("pattern")
    if pattern_type != "stix":
        known = (
            pattern_type
            if isinstance(pattern_type, str) and pattern_type in _PATTERN_TYPES
            else "unknown"
        )
        stats.skip(f"indicator pattern type {known} (not stix)")
        return
    if not isinstance(pattern, str):
        stats.skip("indicator without a pattern")
        return
    try:
        pairs = pattern_comparisons(pattern)
    except _Unsupported as exc:
        stats.skip(f"indicator pattern not a list of values: {exc}", repr(pattern[:200]))
        return
    context = {**ctx, **_indicator_context(obj)}
    for path, value in pairs:
        kind, original = _path_kind(path)
        yield from _emit(kind, value, original, context, stats)


_SCO_VALUE_KINDS: Final[dict[str, Kind]] = {
    "ipv4-addr": Kind.IPV4,
    "ipv6-addr": Kind.IPV6,
    "domain-name": Kind.DOMAIN,
    "url": Kind.URL,
    "email-addr": Kind.EMAIL,
}


def _sco(obj: dict[str, Any], ctx: dict[str, Any], stats: ReadStats) -> Iterator[Observable]:
    obj_type = obj.get("type")
    context = {**ctx, "object_id": obj.get("id")}
    kind = _SCO_VALUE_KINDS.get(str(obj_type))
    if kind is not None:
        yield from _emit(kind, obj.get("value"), None, context, stats)
        return
    if obj_type == "file":
        hashes = obj.get("hashes")
        if isinstance(hashes, dict):
            for name, value in hashes.items():
                hash_kind = _HASH_NAMES.get(str(name).lower())
                if hash_kind is None:
                    yield from _emit(Kind.OTHER, value, f"file:hashes.{name}", context, stats)
                else:
                    yield from _emit(hash_kind, value, None, context, stats)


def read_stix2(data: bytes, stats: ReadStats) -> Iterator[Observable]:
    """Observables of a STIX 2.x bundle, a JSON array of objects, or a single object."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge integers
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise StixReadError(f"not valid JSON: {' '.join(reason.split())[:200]}") from None
    if isinstance(doc, dict) and doc.get("type") == "bundle":
        objects = doc.get("objects") or []
    elif isinstance(doc, list):
        objects = doc
    elif isinstance(doc, dict) and "type" in doc:
        objects = [doc]
    else:
        raise StixReadError("not STIX 2: expected a bundle, an object or a list of objects")
    if not isinstance(objects, list):
        raise StixReadError("not STIX 2: the bundle's objects is not a list")
    stats.packages += 1
    ctx: dict[str, Any] = {}
    if isinstance(doc, dict) and doc.get("id"):
        ctx["package_id"] = doc["id"]
    for obj in objects:
        if not isinstance(obj, dict):
            stats.skip("STIX 2 object that is not a JSON object")
            continue
        obj_type = obj.get("type")
        if not isinstance(obj_type, str):
            stats.skip("STIX 2 object without a type")
            continue
        if obj_type == "indicator":
            yield from _indicator(obj, ctx, stats)
        elif obj_type in _SCO_VALUE_KINDS or obj_type == "file":
            yield from _sco(obj, ctx, stats)

"""Writers that print observables as JSON lines, CSV or a text table.

Shared by every command that lists observables (``stix extract`` now, ``observables`` later), so
the same columns mean the same thing everywhere. Each writer streams: nothing is held back.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from typing import Any, Final, TextIO

from feedgate.observables import Observable

#: Context keys in the order CSV columns and tables show them.
CONTEXT_COLUMNS: Final = (
    "package_id",
    "package_title",
    "package_short_description",
    "indicator_id",
    "indicator_title",
    "indicator_type",
    "description",
    "confidence",
    "valid_from",
    "valid_until",
    "produced",
    "tlp",
    "composition",
)
CSV_COLUMNS: Final = ("kind", "value", "type", *CONTEXT_COLUMNS)
FORMATS: Final = ("jsonl", "table", "csv")

Writer = Callable[[Observable], None]


def _json_encoder() -> Callable[[Any], str]:
    """What ``json.dumps(value, ensure_ascii=False, default=str)`` writes, made 3x faster for
    the small dicts of a JSON line: the standard library builds its C encoder anew on every
    call (``JSONEncoder.iterencode``); this one is built once. Where that C encoder is missing
    or writes anything else, the standard call it is."""
    public = json.JSONEncoder(ensure_ascii=False, default=str).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return public
    try:
        # markers None: no circular check (JSON lines hold no cycles), the rest as public's
        fast = make(None, str, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
        probe = {"a": [1.5, 1e16, -0.0, None, True, 2**70], "b": {"c": "é\n\x1b\ud800"}}
        if "".join(fast(probe, 0)) != public(probe):
            return public
    except (TypeError, ValueError):  # another signature
        return public

    def encode(value: Any) -> str:
        return "".join(fast(value, 0))

    return encode


#: A JSON line's encoder (see _json_encoder).
encode_json: Final[Callable[[Any], str]] = _json_encoder()
#: A string as :data:`encode_json` writes it (quoted, escaped; non-ASCII kept).
encode_string: Final[Callable[[str], str]] = json.encoder.encode_basestring


def jsonl_writer(out: TextIO) -> Writer:
    write_text = out.write

    def write(obs: Observable) -> None:
        write_text(encode_json(obs.to_dict()))
        write_text("\n")

    return write


def csv_writer(out: TextIO, extra: tuple[str, ...] = ()) -> Writer:
    """CSV with :data:`CSV_COLUMNS`, then the context keys ``extra`` (e.g. where a stored
    observable came from and when it was seen)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((*CSV_COLUMNS, *extra))
    keys = (*CONTEXT_COLUMNS, *extra)

    def write(obs: Observable) -> None:
        ctx = obs.context
        writer.writerow([str(obs.kind), obs.value, obs.original_type or "", *_cells(ctx, keys)])

    return write


def _cells(ctx: Any, keys: tuple[str, ...]) -> list[str]:
    return [cell(ctx.get(k)) for k in keys]


def cell(value: Any) -> str:
    """A context value as a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as in JSON
    return str(value)


_VALUE_WIDTH: Final = 48


def table_writer(out: TextIO) -> Writer:
    """A plain aligned table, streamed row by row (a rich table would hold every row).

    SOURCE is the package (pulse) title: OTX's indicator titles only repeat the value.
    """
    out.write(f"{'KIND':<7} {'VALUE':<{_VALUE_WIDTH}} SOURCE\n")

    def write(obs: Observable) -> None:
        ctx = obs.context
        where = str(ctx.get("package_title") or ctx.get("indicator_title") or "")
        if obs.original_type is not None:
            where = f"[{obs.original_type}] {where}"
        value, where = _printable(obs.value), _printable(where)
        out.write(f"{obs.kind!s:<7} {value:<{_VALUE_WIDTH}} {where}\n")

    return write


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _printable(text: str) -> str:
    """Feed text made safe for a terminal line: control characters (newlines, escape
    sequences) shown escaped, so a title can neither forge rows nor drive the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text)


def make_writer(fmt: str, out: TextIO, csv_extra: tuple[str, ...] = ()) -> Writer:
    if fmt == "jsonl":
        return jsonl_writer(out)
    if fmt == "csv":
        return csv_writer(out, csv_extra)
    if fmt == "table":
        return table_writer(out)
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")

"""Stored observables written as JSON lines, CSV or a table: what ``feedgate observables`` prints.

The lines are exactly what :mod:`feedgate.output`'s writers make of :func:`as_observable` (the
observable, its context, then where and when it was seen), byte for byte; only faster. An export
of a million rows spent most of its time building, for every row, a merged context dict, an
:class:`~feedgate.observables.Observable` and a JSON encoder, to write what the store already
keeps as JSON text. So here each shared context layer (a pulse's title, description, TLP: the
same for its many indicators) is decoded and encoded once, and per row only the indicator's own
keys are; times repeat (a poll stamps its rows alike) and are formatted once each. A row the
shortcut cannot write exactly (a context key that the observable's own fields override, or
that both layers hold) goes the reference way.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

from feedgate.observables import Kind, Observable
from feedgate.output import CONTEXT_COLUMNS, cell, encode_json, encode_string, make_writer

from .store import EXPORT_LAYER_BUDGET, ExportRow, StoredObservable

__all__ = ["STORED_COLUMNS", "as_observable", "iso_time", "row_writer"]

#: What a stored observable adds to the context (:func:`as_observable`): CSV columns after the
#: reader's, so an export of several sources says which source each row came from.
STORED_COLUMNS: Final = ("source", "first_seen", "last_seen", "expired")
#: Keys a JSON line takes from the observable itself; a context holding one goes the
#: reference way (:meth:`Observable.to_dict` and :func:`as_observable` decide who wins).
_OWN_FIELDS: Final = frozenset({"kind", "value", "type", *STORED_COLUMNS})
#: Distinct times kept formatted at once.
_CACHE: Final = 4096

RowWriter = Callable[[ExportRow], None]


def iso_time(moment: datetime) -> str:
    """``2026-11-01T00:00:00Z`` (microseconds when there are any)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def as_observable(stored: StoredObservable) -> Observable:
    """A stored row as an :class:`Observable` whose context also says where and when it was
    seen (``source``, ``first_seen``, ``last_seen``, ``expired``), for the shared writers."""
    context = {
        **stored.context,
        "source": stored.source,
        "first_seen": iso_time(stored.first_seen),
        "last_seen": iso_time(stored.last_seen),
        "expired": stored.expired,
    }
    return Observable(Kind(stored.kind), stored.value, stored.original_type, context)


def _loads(text: str) -> dict[str, Any]:
    """A stored context, as :func:`feedgate.feeds.store._context` reads it (orjson is 3x
    faster; what it refuses, such as a lone surrogate's escape, the standard library reads)."""
    try:
        found = orjson.loads(text)
    except orjson.JSONDecodeError:
        found = json.loads(text)
    return found if isinstance(found, dict) else {}


class _Layer:
    """A shared context layer, decoded once: its keys, its JSON line part, its CSV cells."""

    __slots__ = ("body", "cells", "keys", "plain")

    def __init__(self, text: str | None) -> None:
        items = {} if text is None else _loads(text)
        self.keys = frozenset(items)
        self.plain = self.keys.isdisjoint(_OWN_FIELDS)
        self.body = ", " + encode_json(items)[1:-1] if items else ""
        self.cells = [cell(items.get(key)) for key in CONTEXT_COLUMNS]


class _Rows:
    """The caches an export keeps: layers by their text (the store hands the rows of one
    layer the same text object, so a lookup hashes nothing), times by their value; each
    bounded like the store's (:data:`feedgate.feeds.store.EXPORT_LAYER_BUDGET`)."""

    def __init__(self) -> None:
        self._layers: dict[str | None, _Layer] = {}
        self._layer_size = 0
        self._times: dict[datetime, str] = {}

    def layer(self, text: str | None) -> _Layer:
        found = self._layers.get(text)
        if found is None:
            if self._layer_size >= EXPORT_LAYER_BUDGET:
                self._layers.clear()
                self._layer_size = 0
            found = self._layers[text] = _Layer(text)
            self._layer_size += len(text or "")
        return found

    def time(self, moment: datetime) -> str:
        found = self._times.get(moment)
        if found is None:
            if len(self._times) >= _CACHE:
                self._times.clear()
            found = self._times[moment] = iso_time(moment)
        return found


def _jsonl_writer(out: TextIO) -> RowWriter:
    rows = _Rows()
    reference = make_writer("jsonl", out)
    names: dict[str, str] = {}  # source name or kind → its JSON string
    write = out.write

    def text(name: str) -> str:
        found = names.get(name)
        if found is None:
            found = names[name] = encode_string(name)
        return found

    def write_row(row: ExportRow) -> None:
        layer = rows.layer(row.shared_context)
        own = _loads(row.own_context) if row.own_context != "{}" else None
        if not layer.plain or (
            own and not (_OWN_FIELDS.isdisjoint(own) and layer.keys.isdisjoint(own))
        ):
            reference(as_observable(row.stored()))
            return
        typed = ', "type": ' + encode_string(row.original_type) if row.original_type else ""
        mine = ", " + encode_json(own)[1:-1] if own else ""
        expired = "true" if row.expired else "false"
        write(
            f'{{"kind": {text(row.kind)}, "value": {encode_string(row.value)}{typed}{layer.body}'
            f'{mine}, "source": {text(row.source)}, "first_seen": "{rows.time(row.first_seen)}",'
            f' "last_seen": "{rows.time(row.last_seen)}", "expired": {expired}}}\n'
        )

    return write_row


_COLUMN_OF: Final = {key: number for number, key in enumerate(CONTEXT_COLUMNS)}


def _csv_writer(out: TextIO) -> RowWriter:
    rows = _Rows()
    # The header and the columns of feedgate.output.csv_writer, from the one place.
    make_writer("csv", out, csv_extra=STORED_COLUMNS)
    writerow = csv.writer(out, lineterminator="\n").writerow
    columns = _COLUMN_OF

    def write_row(row: ExportRow) -> None:
        cells = rows.layer(row.shared_context).cells
        if row.own_context != "{}":
            cells = cells.copy()
            for key, value in _loads(row.own_context).items():
                number = columns.get(key)
                if number is not None:
                    cells[number] = cell(value)
        writerow(
            (
                row.kind,
                row.value,
                row.original_type or "",
                *cells,
                row.source,
                rows.time(row.first_seen),
                rows.time(row.last_seen),
                "true" if row.expired else "false",
            )
        )

    return write_row


def row_writer(fmt: str, out: TextIO) -> RowWriter:
    """A writer of :class:`ExportRow` to ``out`` in ``fmt`` (jsonl, csv or table)."""
    if fmt == "jsonl":
        return _jsonl_writer(out)
    if fmt == "csv":
        return _csv_writer(out)
    writer = make_writer(fmt, out, csv_extra=STORED_COLUMNS)
    return lambda row: writer(as_observable(row.stored()))

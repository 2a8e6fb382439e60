"""feeds._ingest reads the contexts parse workers send as JSON (EncodedContexts) without making
a mapping per context: what it stores must be exactly what it stores for the same contexts as
mappings (own text, layer, valid-until, expired)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from feedgate.db import engine
from feedgate.feeds import secrets
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.observables import (
    EncodedContexts,
    Kind,
    LayeredContext,
    Observable,
    ObservableBatch,
    context_json,
)
from feedgate.stix import _parallel

NOW = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())


SHARED: dict[str, Any] = {"package_id": "p", "package_title": "caf\u00e9 \u2603"}
ODD_SHARED: dict[str, Any] = {"package_title": "p2", "valid_until": "2030-01-01T00:00:00Z"}
CONTEXTS: list[dict[str, Any] | LayeredContext] = [
    LayeredContext(SHARED, {"indicator_id": "i-1"}),
    LayeredContext(SHARED, {"indicator_id": "i-2", "valid_until": "2001-01-01T00:00:00Z"}),
    LayeredContext(SHARED, {"indicator_id": "i-3", "valid_until": "2099-01-01T00:00:00+00:00"}),
    LayeredContext(SHARED, {}),  # no own keys
    LayeredContext({}, {"indicator_id": "i-5"}),  # an empty layer is no layer
    LayeredContext(ODD_SHARED, {"indicator_id": "i-6"}),  # valid-until in the layer
    LayeredContext(ODD_SHARED, {"valid_until": None}),  # the own key wins, even as null
    LayeredContext(SHARED, {"valid_until": "not a time"}),
    {"indicator_id": "plain", "valid_until": "2001-01-01T00:00:00Z"},  # STIX 2: one layer
    {},
    {"title": "bad \ud800 text"},  # orjson refuses it: the worker pickles the columns
]


def observables() -> list[Observable]:
    return [
        Observable(Kind.DOMAIN, f"d{n}.example", None, context)
        for n, context in enumerate(CONTEXTS)
    ]


def test_encoded_contexts_are_read_as_their_mappings_are(tmp_path: Path) -> None:
    batch = _parallel._unpack(_parallel._pack(observables()))
    assert batch.encoded is not None
    store = FeedStore(engine(str(tmp_path / "f.db")))
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    now = NOW.replace(tzinfo=None)
    with store.segment("otx") as seg:
        from_json = seg._encoded_contexts(batch.encoded, now, True)
        layers_json = dict(seg._layers)
        seg._layers.clear()
        from_mappings = seg._contexts(batch.encoded.mappings(), now, True)
        assert from_json == from_mappings
        assert seg._layers == layers_json and len(layers_json) == 2
        expired = [row[2] for row in from_json]
        assert expired == [
            False,
            True,
            False,
            False,
            False,
            False,
            False,
            False,
            True,
            False,
            False,
        ]
    # and the stored observables read back with the contexts they came with
    store2 = FeedStore(engine(str(tmp_path / "g.db")))
    store2.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    with store2.segment("otx") as seg:
        seg.upsert(batch, NOW)
    stored = {o.value: o.context for o in store2.observables(live_only=False, limit=100)}
    for obs in observables():
        assert stored[obs.value] == dict(obs.context)
        assert list(stored[obs.value]) == list(obs.context)


def test_a_batch_of_json_contexts_reads_as_mappings_only_when_asked() -> None:
    batch = _parallel._unpack(_parallel._pack(observables()))
    assert batch.contexts._built is None  # type: ignore[attr-defined]
    assert [dict(o.context) for o in batch.observables()] == [dict(c) for c in CONTEXTS]
    assert len(batch.contexts) == len(CONTEXTS)
    encoded = EncodedContexts(["{}"], [-1], [])
    assert (
        ObservableBatch.of_encoded([Kind.MD5], ["a" * 32], [None], [0], encoded).contexts[0] == {}
    )
    assert context_json(batch.contexts[0]) == context_json(CONTEXTS[0])


def test_text_no_database_can_hold_never_fails_a_segment(tmp_path: Path) -> None:
    """A STIX 2 "\\ud800" escape gives a lone surrogate: refused as a value, escaped in a
    context (it made the segment's commit fail, and so the source's every poll)."""
    from feedgate.observables import InvalidValue, normalise

    for kind in (Kind.OTHER, Kind.URL, Kind.SHA256):
        with pytest.raises(InvalidValue, match="half of a UTF-16 surrogate pair"):
            normalise(kind, "value-\ud800")
    store = FeedStore(engine(str(tmp_path / "f.db")))
    store.add_source(Source(name="otx", hostname="otx.example", collection="c"))
    odd = {"title": "bad \ud800 text", "tlp": "white"}
    with store.segment("otx") as seg:
        assert seg.upsert([Observable(Kind.DOMAIN, "odd.example", None, odd)], NOW) == (1, 0)
    assert store.observables()[0].context == odd

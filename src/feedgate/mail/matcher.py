"""The matcher: the enforced observables in memory, fast and small (design.md "Mail").

A :class:`Snapshot` is immutable: sorted numpy arrays of 64-bit keys (the first 8 bytes of the
stored digest, read through :mod:`feedgate.feeds.enforced`, never rehashed; e-mail addresses
keyed by their lower-cased value) with parallel row ids and source ids, 20 bytes an observable,
and a range table per address family for networks. A key is a prefix, so a hit is only a
candidate: its row is fetched from the store by id and the value compared before it is a
:class:`~feedgate.mail.model.Match` (a 64-bit collision costs one fetch, never a false match).

Which rows are enforced also depends on their source (enabled, its ``enforce`` kinds). The
arrays hold every live row of a matchable kind and the source's switches are applied at hit
time from a tiny table: disabling a source or changing what it enforces needs no rebuild, only
the next refresh's read of that table.

A :class:`Matcher` holds the current snapshot and follows the store's version
(:meth:`FeedStore.version`). After a poll it does not rebuild: it reads what changed since its
version (:func:`feedgate.feeds.enforced.changes_since`) into a small *delta* (sorted arrays too)
beside the *base*, and ids that left the base (expired) into a sorted *tombstone* array; the
delta and the tombstones are merged into a new base once they pass a fraction of it, or when a
source was deleted (its rows leave the base then). Each refresh makes a new snapshot and swaps
one reference: a scan holding the old one sees it whole.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from feedgate.feeds.enforced import (
    KIND_CODES,
    EnforcedSource,
    HitRow,
    Rows,
    changes_since,
    digest_key,
    live_rows,
    observables_by_ids,
)
from feedgate.feeds.store import FeedStore

from .model import Lookup, Match, Offer

__all__ = ["Fetch", "Index", "Matcher", "Ranges", "Snapshot"]

#: What confirms a hit: the stored rows of some ids (those that still exist).
Fetch = Callable[[Iterable[int]], Mapping[int, HitRow]]
Built = Literal["full", "delta", "merge"]

_EMAIL: Final = KIND_CODES["email"]
_CIDR: Final = KIND_CODES["cidr"]
_KIND_OF_LOOKUP: Final[Mapping[Lookup, str]] = {
    Lookup.URL: "url",
    Lookup.EMAIL: "email",
    Lookup.MD5: "md5",
    Lookup.SHA1: "sha1",
    Lookup.SHA256: "sha256",
}

I64 = npt.NDArray[np.int64]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]


def _v6(value: int) -> bytes:
    return value.to_bytes(16, "big")


@dataclass(frozen=True, slots=True, eq=False)
class Ranges:
    """The networks of one address family: sorted by (first, widest first), with each one's
    nearest enclosing network (``parent``, -1 for none).

    CIDR networks are nested or disjoint, never partly overlapping, so the networks holding an
    address are the last one starting at or before it, if it reaches the address, and its
    enclosing ones; else the first of its enclosing ones that reaches it and those above. The
    walk is at most the nesting depth (33 for IPv4, 129 for IPv6). IPv4 bounds are ``uint64``,
    IPv6 bounds 16 big-endian bytes (numpy orders them as numbers).
    """

    family: int
    first: npt.NDArray[np.generic]
    last: npt.NDArray[np.generic]
    ids: I64
    sources: U32
    parent: npt.NDArray[np.int32]

    @classmethod
    def build(
        cls, family: int, first: Sequence[int], last: Sequence[int], ids: I64, sources: U32
    ) -> Ranges:
        order = sorted(range(len(first)), key=lambda i: (first[i], -last[i], int(ids[i])))
        firsts = [first[i] for i in order]
        lasts = [last[i] for i in order]
        parent = np.full(len(order), -1, dtype=np.int32)
        stack: list[int] = []
        for i, (start, end) in enumerate(zip(firsts, lasts, strict=True)):
            while stack and lasts[stack[-1]] < start:
                stack.pop()
            if stack:
                parent[i] = stack[-1]
            stack.append(i)
            del end
        pick = np.array(order, dtype=np.int64)
        return cls(
            family,
            cls._bounds(family, firsts),
            cls._bounds(family, lasts),
            ids[pick] if len(pick) else np.zeros(0, np.int64),
            sources[pick] if len(pick) else np.zeros(0, np.uint32),
            parent,
        )

    @staticmethod
    def _bounds(family: int, values: Sequence[int]) -> npt.NDArray[np.generic]:
        if family == 4:
            return np.array(values, dtype=np.uint64)
        return np.array([_v6(v) for v in values], dtype="S16")

    def _bound(self, array: npt.NDArray[np.generic], i: int) -> int:
        item = array[i]
        if self.family == 4:
            return int(item)
        return int.from_bytes(bytes(item).ljust(16, b"\0"), "big")

    def containing(self, address: int) -> list[int]:
        """Positions of the networks that hold ``address``, innermost first."""
        if not len(self.ids):
            return []
        point = np.uint64(address) if self.family == 4 else np.bytes_(_v6(address))
        i = int(np.searchsorted(self.first, point, side="right")) - 1
        parent = self.parent
        while i >= 0 and self._bound(self.last, i) < address:
            i = int(parent[i])
        found = []
        while i >= 0:
            found.append(i)
            i = int(parent[i])
        return found

    def rows(self) -> tuple[list[int], list[int], I64, U32]:
        """(first, last, ids, sources) of every network, for a rebuild."""
        count = len(self.ids)
        firsts = [self._bound(self.first, i) for i in range(count)]
        lasts = [self._bound(self.last, i) for i in range(count)]
        return firsts, lasts, self.ids, self.sources

    @property
    def nbytes(self) -> int:
        arrays = (self.first, self.last, self.ids, self.sources, self.parent)
        return sum(a.nbytes for a in arrays)

    def __len__(self) -> int:
        return len(self.ids)


def _no_ranges(family: int) -> Ranges:
    return Ranges.build(family, [], [], np.zeros(0, np.int64), np.zeros(0, np.uint32))


@dataclass(frozen=True, slots=True, eq=False)
class Index:
    """Sorted 64-bit keys with each one's row id and source id, and the networks."""

    keys: U64
    ids: I64
    sources: U32
    v4: Ranges
    v6: Ranges

    @classmethod
    def empty(cls) -> Index:
        return cls.of_columns(
            np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.uint32), ()
        )

    @classmethod
    def of_columns(
        cls,
        keys: U64,
        ids: I64,
        sources: U32,
        networks: Iterable[tuple[int, int, int, int, int]],
    ) -> Index:
        """From unsorted keyed rows and (family, first, last, id, source) networks."""
        order = np.argsort(keys, kind="stable")
        by_family: dict[int, list[tuple[int, int, int, int, int]]] = {4: [], 6: []}
        for net in networks:
            by_family[net[0]].append(net)
        ranges = []
        for family in (4, 6):
            nets = by_family[family]
            ranges.append(
                Ranges.build(
                    family,
                    [n[1] for n in nets],
                    [n[2] for n in nets],
                    np.array([n[3] for n in nets], dtype=np.int64),
                    np.array([n[4] for n in nets], dtype=np.uint32),
                )
            )
        return cls(keys[order], ids[order], sources[order], ranges[0], ranges[1])

    def networks(self) -> list[tuple[int, int, int, int, int]]:
        out: list[tuple[int, int, int, int, int]] = []
        for ranges in (self.v4, self.v6):
            firsts, lasts, ids, sources = ranges.rows()
            out.extend(
                (ranges.family, f, la, int(i), int(s))
                for f, la, i, s in zip(firsts, lasts, ids, sources, strict=True)
            )
        return out

    def lookup(self, probes: U64) -> list[tuple[int, int, int]]:
        """(probe position, row id, source id) of every entry whose key is a probe's."""
        if not len(self.keys) or not len(probes):
            return []
        low = np.searchsorted(self.keys, probes, side="left")
        high = np.searchsorted(self.keys, probes, side="right")
        out = []
        for p in np.flatnonzero(high > low):
            for j in range(int(low[p]), int(high[p])):
                out.append((int(p), int(self.ids[j]), int(self.sources[j])))
        return out

    @property
    def nbytes(self) -> int:
        arrays = (self.keys, self.ids, self.sources)
        return sum(a.nbytes for a in arrays) + self.v4.nbytes + self.v6.nbytes

    def __len__(self) -> int:
        return len(self.keys) + len(self.v4) + len(self.v6)


def _keyed(rows: Rows) -> tuple[U64, I64, U32, list[tuple[int, int, int, int, int]]]:
    """The live rows of ``rows`` as index entries: keys (e-mail addresses by their lower-cased
    value, networks apart)."""
    live = rows.live
    keys = rows.keys.copy()
    if rows.emails:
        position = {int(row_id): i for i, row_id in enumerate(rows.ids)}
        for row_id, value in rows.emails:
            keys[position[row_id]] = digest_key("email", value.lower())
    exact = live & (rows.kinds != _CIDR)
    networks = [(n.family, n.first, n.last, n.id, n.source_id) for n in rows.networks]
    return keys[exact], rows.ids[exact], rows.source_ids[exact], networks


@dataclass(frozen=True, slots=True)
class _Probe:
    offer: int  # position in the offers
    kind: str
    text: str  # the value a stored row must have (lower-cased for e-mail)


class Snapshot:
    """The enforced observables at one store version; immutable (see the module doc).

    ``built`` says how it was made from the one before: ``full`` (read whole), ``delta`` (the
    changes since, beside the same base) or ``merge`` (a new base).
    """

    __slots__ = ("_fetch", "base", "built", "by_name", "delta", "sources", "tombstones", "version")

    def __init__(
        self,
        *,
        version: int,
        sources: Mapping[int, EnforcedSource],
        base: Index,
        delta: Index,
        tombstones: I64,
        fetch: Fetch,
        built: Built,
    ) -> None:
        self.version = version
        #: Each source's switches by id, and by name (what a policy asks about).
        self.sources: Mapping[int, EnforcedSource] = dict(sources)
        self.by_name: Mapping[str, EnforcedSource] = {s.name: s for s in sources.values()}
        self.base = base
        self.delta = delta
        #: Sorted ids whose base entries are dead (expired since the base was made).
        self.tombstones = tombstones
        self._fetch = fetch
        self.built: Built = built
        for array in (tombstones, base.keys, base.ids, base.sources, delta.keys, delta.ids):
            array.flags.writeable = False

    # --- made from the store ------------------------------------------------------------------

    @classmethod
    def of_rows(cls, rows: Rows, fetch: Fetch) -> Snapshot:
        """A snapshot of all live rows (:func:`feedgate.feeds.enforced.live_rows`)."""
        keys, ids, sources, networks = _keyed(rows)
        return cls(
            version=rows.version,
            sources={s.id: s for s in rows.sources},
            base=Index.of_columns(keys, ids, sources, networks),
            delta=Index.empty(),
            tombstones=np.zeros(0, np.int64),
            fetch=fetch,
            built="full",
        )

    def with_changes(
        self, changes: Rows, *, merge_fraction: float = 0.05, merge_floor: int = 10_000
    ) -> Snapshot:
        """The snapshot after ``changes`` (:func:`~feedgate.feeds.enforced.changes_since` this
        version): a new delta and tombstones over the same base, or a new base once they pass
        ``merge_fraction`` of it (and at least ``merge_floor`` entries), or a source is gone."""
        changed = changes.ids
        # The delta: its entries for rows not changed again, plus every changed row live now.
        old = self.delta
        keep = ~np.isin(old.ids, changed)
        keys, ids, sources, networks = _keyed(changes)
        gone = set(changed.tolist())
        delta_networks = [n for n in old.networks() if n[3] not in gone] + networks
        delta = Index.of_columns(
            np.concatenate([old.keys[keep], keys]),
            np.concatenate([old.ids[keep], ids]),
            np.concatenate([old.sources[keep], sources]),
            delta_networks,
        )
        expired = changed[~changes.live]
        tombstones = np.union1d(self.tombstones, expired).astype(np.int64)
        table = {s.id: s for s in changes.sources}
        deleted = set(self.sources) - set(table)
        pending = len(delta) + len(tombstones)
        if deleted or pending > max(merge_floor, merge_fraction * len(self.base)):
            base = _merged(self.base, delta, tombstones, np.array(sorted(table), np.uint32))
            delta, tombstones, built = Index.empty(), np.zeros(0, np.int64), "merge"
        else:
            base, built = self.base, "delta"
        return Snapshot(
            version=changes.version,
            sources=table,
            base=base,
            delta=delta,
            tombstones=tombstones,
            fetch=self._fetch,
            built=built,  # type: ignore[arg-type]
        )

    # --- size ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Entries in the index (base entries not yet merged away counted as well)."""
        return len(self.base) - len(self.tombstones) + len(self.delta)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (the source table aside: a few hundred bytes)."""
        return self.base.nbytes + self.delta.nbytes + self.tombstones.nbytes

    # --- matching -----------------------------------------------------------------------------

    def match(self, offers: Iterable[Offer]) -> list[Match]:
        """Every enforced observable ``offers`` hold, in offer order; each offer and observable
        at most once."""
        offered = list(offers)
        probes: list[_Probe] = []
        keys: list[int] = []
        addresses: list[tuple[int, int, int]] = []  # (offer, family, address)
        for position, offer in enumerate(offered):
            for kind, text, key_text in _probes(offer):
                probes.append(_Probe(position, kind, text))
                keys.append(digest_key(kind, key_text))
            if offer.lookup is Lookup.IP:
                address = _address(offer.value)
                if address is not None:
                    addresses.append((position, address.version, int(address)))
        candidates: list[tuple[int, str, str, int, int]] = []  # offer, kind, text, id, source
        probe_keys = np.array(keys, dtype=np.uint64)
        for index, dead in ((self.base, self.tombstones), (self.delta, None)):
            for p, row_id, source in index.lookup(probe_keys):
                if dead is not None and _contains(dead, row_id):
                    continue
                probe = probes[p]
                candidates.append((probe.offer, probe.kind, probe.text, row_id, source))
            for position, family, number in addresses:
                ranges = index.v4 if family == 4 else index.v6
                for i in ranges.containing(number):
                    row_id = int(ranges.ids[i])
                    if dead is not None and _contains(dead, row_id):
                        continue
                    candidates.append(
                        (position, "cidr", offered[position].value, row_id, int(ranges.sources[i]))
                    )
        wanted = [c for c in candidates if self._enforces(c[4], c[1])]
        if not wanted:
            return []
        rows = self._fetch(c[3] for c in wanted)
        found: dict[tuple[int, int], Match] = {}
        for position, kind, text, row_id, _ in wanted:
            row = rows.get(row_id)
            if row is None or (position, row_id) in found or not self._confirms(row, kind, text):
                continue
            offer = offered[position]
            found[(position, row_id)] = Match(
                part=offer.part,
                kind=row.kind,
                value=row.value,
                seen=offer.seen,
                source=row.source,
                observable_id=row.id,
                context=row.context,
            )
        # offer order; for one offer, the order found (a network before those holding it)
        return [match for _, match in sorted(found.items(), key=lambda item: item[0][0])]

    def _enforces(self, source_id: int, kind: str) -> bool:
        source = self.sources.get(source_id)
        return source is not None and source.enforces(kind)

    def _confirms(self, row: HitRow, kind: str, text: str) -> bool:
        """The stored row is what the probe looked for (a key is only a prefix), still live,
        and of a source that enforces it."""
        if row.expired or row.kind != kind or not self._enforces(row.source_id, kind):
            return False
        return value_matches(kind, row.value, text)


def value_matches(kind: str, stored: str, offered: str) -> bool:
    """Whether a stored value of ``kind`` matches an offered value: a network holds the
    address, an e-mail address is the same in any case (local part included), every other
    kind is the same text (both normalised as the store normalises)."""
    if kind == "cidr":
        address = _address(offered)
        try:
            return address is not None and address in ipaddress.ip_network(stored)
        except ValueError:
            return False
    if kind == "email":
        return stored.lower() == offered.lower()
    return stored == offered


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _probes(offer: Offer) -> list[tuple[str, str, str]]:
    """(kind, value a row must have, value its key is of) for each exact lookup of ``offer``."""
    lookup, value = offer.lookup, offer.value
    if lookup is Lookup.IP:
        address = _address(value)
        if address is None:
            return []
        kind = "ipv4" if address.version == 4 else "ipv6"
        return [(kind, str(address), str(address))]
    if lookup is Lookup.DOMAIN:
        labels = value.strip().rstrip(".").lower().split(".")
        names = [".".join(labels[i:]) for i in range(len(labels) - 1)]
        return [("domain", name, name) for name in names if name]
    if lookup is Lookup.EMAIL:
        low = value.lower()
        return [("email", low, low)]
    kind = _KIND_OF_LOOKUP[lookup]
    text = value.lower() if kind in ("md5", "sha1", "sha256") else value
    return [(kind, text, text)]


def _contains(sorted_ids: I64, row_id: int) -> bool:
    i = int(np.searchsorted(sorted_ids, row_id))
    return i < len(sorted_ids) and int(sorted_ids[i]) == row_id


def _merged(base: Index, delta: Index, tombstones: I64, sources: U32) -> Index:
    """A new base: ``base`` without dead entries (tombstones, rows ``delta`` has again, rows of
    sources no longer there), with ``delta``'s entries put in key order (no full sort)."""
    dead = np.union1d(tombstones, delta.ids)
    keep = ~np.isin(base.ids, dead) & np.isin(base.sources, sources)
    keys, ids, owners = base.keys[keep], base.ids[keep], base.sources[keep]
    where = np.searchsorted(keys, delta.keys)
    living = set(sources.tolist())
    dead_set = set(dead.tolist())
    networks = [
        n for n in base.networks() if n[3] not in dead_set and n[4] in living
    ] + delta.networks()
    merged = Index.of_columns(
        np.insert(keys, where, delta.keys),
        np.insert(ids, where, delta.ids),
        np.insert(owners, where, delta.sources),
        networks,
    )
    return merged


class Matcher:
    """The current :class:`Snapshot` of a store, refreshed when the store's version moves.

    :meth:`snapshot` looks at the version at most every ``check_every`` seconds of ``clock``
    (a monotonic clock, injected for tests); :meth:`refresh` looks now. Refreshes are serialised
    (one at a time); readers never wait for one: they keep the snapshot they have.
    ``merge_fraction``/``merge_floor``: when the delta and tombstones are merged into a new base
    (see :meth:`Snapshot.with_changes`).
    """

    def __init__(
        self,
        store: FeedStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_every: float = 1.0,
        merge_fraction: float = 0.05,
        merge_floor: int = 10_000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._check_every = check_every
        self._merge_fraction = merge_fraction
        self._merge_floor = merge_floor
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self._checked: float | None = None

    def _fetch(self, ids: Iterable[int]) -> Mapping[int, HitRow]:
        return observables_by_ids(self._store, ids)

    def snapshot(self) -> Snapshot:
        """The current snapshot, refreshed first when ``check_every`` has passed since the last
        look and the store's version moved (built on first use)."""
        current = self._current
        checked = self._checked
        if current is None or checked is None or self._clock() - checked >= self._check_every:
            self.refresh()
            current = self._current
        assert current is not None
        return current

    def refresh(self) -> bool:
        """Bring the snapshot up to the store's version now; whether it changed."""
        with self._lock:
            self._checked = self._clock()
            current = self._current
            if current is None:
                self._current = Snapshot.of_rows(live_rows(self._store), self._fetch)
                return True
            if self._store.version() == current.version:
                return False
            changes = changes_since(self._store, current.version)
            self._current = current.with_changes(
                changes, merge_fraction=self._merge_fraction, merge_floor=self._merge_floor
            )
            return True

    def rebuild(self) -> Snapshot:
        """A snapshot read whole from the store (the first one is made so), made current."""
        with self._lock:
            self._checked = self._clock()
            self._current = Snapshot.of_rows(live_rows(self._store), self._fetch)
            return self._current

"""The hub's storage: users, API keys, subscriptions, pulses and indicators (SQLAlchemy Core).

The schema is brought up to date on open by the Alembic migrations of :mod:`feedgate.migrate`
(schema ``hub``, design.md "Storage"; the tables are in :mod:`feedgate.hub.schema`);
``SCHEMA_VERSION`` in ``settings`` is the older marker, still written.

Every stored pulse carries two server-set positions:

* ``label`` — its TAXII timestamp label: the pulse's ``modified`` time, bumped by microseconds
  where needed so that labels are UNIQUE and strictly INCREASING in the order pulses are written
  (an update gets a new, later label). Kept as integer microseconds since the epoch.
* ``seq`` — a hub-wide integer that grows by one per write of a pulse.

Both are allocated under one lock (a row of ``counters``: ``BEGIN IMMEDIATE`` on SQLite,
``SELECT ... FOR UPDATE`` on PostgreSQL) that is held until commit, so ordering by label is
ordering by seq, and a reader never sees seq N+1 committed without seq N. A TAXII poll notes
``max_seq()`` when it starts and pages with ``pulses_page(after=..., max_seq=...)``: pulses
written while it pages neither appear nor shift the pages (keyset pagination on a snapshot).

Backdating: by default (``backdate=True``) a new pulse's label is its ``modified`` time, so seeded
or imported history spreads over time as OTX's does. A pulse whose ``modified`` is older than the
newest label gets a label just after it, and that may lie before the end of a window a poller
has already fetched, so that poller never sees it. Writers that feed a live hub (``hub pulse
import``) pass ``backdate=False``: the label is then at least the current time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import sqlalchemy as sa

from feedgate import migrate
from feedgate.db import read_transaction, write_transaction

from .model import Indicator, Pulse, User, canonical_type, is_pulse_id, utcnow
from .passwords import api_key_digest, hash_password, new_api_key, verify_password
from .schema import (
    api_keys,
    counters,
    indicators,
    packages,
    pulses,
    settings,
    subscriptions,
    users,
)

SCHEMA_VERSION = "1"

_EPOCH = datetime(1970, 1, 1)
_PASSWORD_CACHE_SIZE = 4096


class HubError(Exception):
    """A hub operation that cannot be done (unknown user, duplicate pulse, key in use...)."""


class NotFoundError(HubError):
    """The named user or pulse does not exist."""


class PulseEntry(NamedTuple):
    """A pulse in label order, with its keyset cursor ``(label, seq)``."""

    pulse: Pulse
    label: datetime
    seq: int

    @property
    def cursor(self) -> tuple[datetime, int]:
        """What to pass as ``after=`` to get the following page."""
        return (self.label, self.seq)


@dataclass(frozen=True, slots=True)
class PulsePage:
    """One page of a REST listing and the total number of matches."""

    count: int
    pulses: list[Pulse]


#: How many hex digits of a key's digest name it (``hub key list``, ``hub key revoke``): enough
#: to tell a hub's keys apart, and nothing that helps to guess a key.
KEY_ID_DIGITS: Final = 12


class ApiKey(NamedTuple):
    """A stored API key as an admin sees it: never the key, only an id (a prefix of its
    digest), its user and when it was added."""

    id: str
    username: str
    created: datetime


class IndicatorHit(NamedTuple):
    """A pulse that carries a looked-up indicator."""

    pulse_id: str
    pulse_name: str
    author_name: str
    modified: datetime
    indicator: Indicator


def label_to_micros(value: datetime) -> int:
    """A naive-UTC datetime as integer microseconds since the epoch (the stored label)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def micros_to_label(value: int) -> datetime:
    """The inverse of :func:`label_to_micros`."""
    return _EPOCH + timedelta(microseconds=value)


def visible_to(viewer: str) -> sa.ColumnElement[bool]:
    """The exchange's one visibility rule, as a SQL predicate on ``pulses``: a public pulse is
    seen by every user, a private one (``public`` false) by its author alone, as on OTX.

    ``viewer`` is the user asking. Every face that shows pulses to a user filters with this
    predicate (the REST lists, details, search and indicator lookups; the TAXII polls, their
    counts and part positions), so the REST API and a TAXII poll can never show one subscriber
    different sets of pulses.
    """
    return sa.or_(pulses.c.public.is_(True), pulses.c.author_name == viewer)


def _seen_by(query: Any, viewer: str | None) -> Any:
    """``query`` on ``pulses`` narrowed to what ``viewer`` may see; ``None``: the hub's own view
    (every pulse: administration, seeding, tests), never a user's."""
    return query if viewer is None else query.where(visible_to(viewer))


def _json_list(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if value else ()


class HubStore:
    """The hub's data, over any SQLAlchemy engine from :func:`feedgate.db.engine`.

    Methods are thread-safe (each uses its own connection and transaction). Writes on SQLite use
    ``BEGIN IMMEDIATE``; several processes may share one database file.
    """

    def __init__(self, engine: sa.Engine, now: Callable[[], datetime] = utcnow) -> None:
        """``now`` is the hub's clock (naive UTC): what stamps users, pulse labels and an
        update's ``modified``. Tests pass their own, so their windows never depend on the day."""
        self.engine = engine
        self._now = now
        self._postgres = engine.dialect.name == "postgresql"
        self._pw_cache: OrderedDict[tuple[str, str, bytes], None] = OrderedDict()
        self._pw_lock = threading.Lock()
        self._pepper = secrets.token_bytes(32)  # cache keys are useless outside this process
        migrate.upgrade(engine, "hub")  # an empty or create_all database, or one an upgrade behind
        with self._write() as conn:
            for name in ("seq", "label", "indicator_id"):
                if (
                    conn.execute(sa.select(counters.c.value).where(counters.c.name == name)).first()
                    is None
                ):
                    conn.execute(counters.insert().values(name=name, value=0))
            if self._setting(conn, "schema_version") is None:
                conn.execute(settings.insert().values(name="schema_version", value=SCHEMA_VERSION))

    # --- plumbing -------------------------------------------------------------------------

    def _write(self) -> AbstractContextManager[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        return write_transaction(self.engine)

    def _read(self) -> AbstractContextManager[sa.Connection]:
        """A read transaction: one consistent snapshot for all its queries."""
        return read_transaction(self.engine)

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()

    def _lock_counters(self, conn: sa.Connection) -> dict[str, int]:
        query = sa.select(counters.c.name, counters.c.value)
        if self._postgres:
            query = query.with_for_update()
        return {name: int(value) for name, value in conn.execute(query)}

    @staticmethod
    def _save_counters(conn: sa.Connection, values: dict[str, int]) -> None:
        for name, value in values.items():
            conn.execute(counters.update().where(counters.c.name == name).values(value=value))

    @staticmethod
    def _setting(conn: sa.Connection, name: str) -> str | None:
        row = conn.execute(sa.select(settings.c.value).where(settings.c.name == name)).first()
        return None if row is None else row[0]

    @staticmethod
    def _put_setting(conn: sa.Connection, name: str, value: str | None) -> None:
        conn.execute(settings.delete().where(settings.c.name == name))
        if value is not None:
            conn.execute(settings.insert().values(name=name, value=value))

    @staticmethod
    def _user_id(conn: sa.Connection, username: str) -> int:
        row = conn.execute(sa.select(users.c.id).where(users.c.username == username)).first()
        if row is None:
            raise NotFoundError(f"no such user: {username}")
        return int(row[0])

    @staticmethod
    def _user(row: Any) -> User:
        return User(
            username=row.username, created=row.created, has_password=bool(row.password_hash)
        )

    # --- users ----------------------------------------------------------------------------

    def create_user(
        self,
        username: str,
        api_key: str | None = None,
        password: str | None = None,
        subscribe: Iterable[str] = (),
    ) -> tuple[User, str | None]:
        """Create ``username``, or add to an existing one (design.md: ``hub user add`` on an
        existing user adds): the API key, a new password, subscriptions.

        Without ``api_key`` a key is generated when the user has none yet. Returns the user and
        the key that was generated (``None`` when one was given or the user already had one):
        the only time a generated key is ever seen. ``HubError`` if the key belongs to another
        user.
        """
        name = username.strip()
        if not name or len(name) > 150 or any(c.isspace() for c in name):
            raise HubError(f"invalid user name {username!r}: 1-150 characters, no spaces")
        authors = [a.strip() for a in subscribe]
        if any(not a for a in authors):
            raise HubError("empty author name to subscribe to")
        password_hash = hash_password(password) if password is not None else None
        now = self._now()
        generated: str | None = None
        with self._write() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == name)).first()
            if row is None:
                conn.execute(
                    users.insert().values(username=name, password_hash=password_hash, created=now)
                )
                user_id = self._user_id(conn, name)
            else:
                user_id = int(row.id)
                if password_hash is not None:
                    conn.execute(
                        users.update()
                        .where(users.c.id == user_id)
                        .values(password_hash=password_hash)
                    )
            if api_key is None:
                has_key = conn.execute(
                    sa.select(api_keys.c.digest).where(api_keys.c.user_id == user_id).limit(1)
                ).first()
                if has_key is None:
                    generated = api_key = new_api_key()
            if api_key is not None:
                if not api_key.strip():
                    raise HubError("empty API key")
                digest = api_key_digest(api_key)
                owner = conn.execute(
                    sa.select(api_keys.c.user_id).where(api_keys.c.digest == digest)
                ).first()
                if owner is None:
                    conn.execute(
                        api_keys.insert().values(digest=digest, user_id=user_id, created=now)
                    )
                elif int(owner[0]) != user_id:
                    raise HubError("that API key is already in use by another user")
            for author in authors:
                self._subscribe(conn, user_id, author)
            user = self._user(conn.execute(sa.select(users).where(users.c.id == user_id)).one())
        return user, generated

    def get_user(self, username: str) -> User | None:
        """The user called ``username``, if any."""
        with self._read() as conn:
            row = conn.execute(sa.select(users).where(users.c.username == username)).first()
        return None if row is None else self._user(row)

    def list_users(self) -> list[User]:
        """All users, by name."""
        with self._read() as conn:
            return [
                self._user(r) for r in conn.execute(sa.select(users).order_by(users.c.username))
            ]

    def delete_user(self, username: str, *, with_pulses: bool = False) -> int:
        """Remove ``username`` with their API keys, password and subscriptions, and everyone's
        subscriptions to them; returns how many of their pulses went too. An author's pulses
        are kept only with the author, so ``HubError`` unless ``with_pulses`` when there are
        any."""
        with self._write() as conn:
            user_id = self._user_id(conn, username)
            owned = pulses.c.author_name == username
            count = int(
                conn.execute(sa.select(sa.func.count()).select_from(pulses).where(owned)).scalar()
                or 0
            )
            if count and not with_pulses:
                raise HubError(
                    f"user {username} is the author of {count} pulse(s): delete them too with"
                    " --with-pulses, or revoke the user's API keys instead"
                )
            ids = sa.select(pulses.c.id).where(owned).scalar_subquery()
            conn.execute(packages.delete().where(packages.c.pulse_id.in_(ids)))
            conn.execute(indicators.delete().where(indicators.c.pulse_id.in_(ids)))
            conn.execute(pulses.delete().where(owned))
            conn.execute(api_keys.delete().where(api_keys.c.user_id == user_id))
            conn.execute(
                subscriptions.delete().where(
                    sa.or_(subscriptions.c.user_id == user_id, subscriptions.c.author == username)
                )
            )
            conn.execute(users.delete().where(users.c.id == user_id))
            if self._setting(conn, "default_author") == username:
                self._put_setting(conn, "default_author", None)
        return count

    def api_keys(self, username: str | None = None) -> list[ApiKey]:
        """The stored keys (of ``username``, or of everyone), by user then age, as ids."""
        query = (
            sa.select(api_keys.c.digest, users.c.username, api_keys.c.created)
            .join(users, users.c.id == api_keys.c.user_id)
            .order_by(users.c.username, api_keys.c.created, api_keys.c.digest)
        )
        with self._read() as conn:
            if username is not None:
                query = query.where(api_keys.c.user_id == self._user_id(conn, username))
            return [
                ApiKey(r.digest[:KEY_ID_DIGITS], r.username, r.created) for r in conn.execute(query)
            ]

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Remove the key whose id (a prefix of its digest, as :meth:`api_keys` shows it) is
        ``key_id``: it authenticates nobody from now on. ``NotFoundError`` if there is none,
        ``HubError`` if the id is too short to name one key."""
        wanted = key_id.strip().lower()
        if len(wanted) < 8 or any(c not in "0123456789abcdef" for c in wanted):
            raise HubError(f"not an API key id: {key_id!r} (the hex id the key list shows)")
        with self._write() as conn:
            rows = conn.execute(
                sa.select(api_keys.c.digest, users.c.username, api_keys.c.created)
                .join(users, users.c.id == api_keys.c.user_id)
                .where(api_keys.c.digest.startswith(wanted, autoescape=True))
            ).all()
            if not rows:
                raise NotFoundError(f"no API key with id {wanted}")
            if len(rows) > 1:
                raise HubError(f"{len(rows)} API keys have ids starting {wanted}: give more digits")
            conn.execute(api_keys.delete().where(api_keys.c.digest == rows[0].digest))
        row = rows[0]
        return ApiKey(row.digest[:KEY_ID_DIGITS], row.username, row.created)

    def user_by_api_key(self, key: str) -> User | None:
        """The owner of API key ``key`` (looked up by its digest), or ``None``."""
        if not key or not key.strip():
            return None
        query = (
            sa.select(users)
            .join(api_keys, api_keys.c.user_id == users.c.id)
            .where(api_keys.c.digest == api_key_digest(key))
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else self._user(row)

    def check_password(self, username: str, password: str) -> bool:
        """True if ``password`` is ``username``'s password.

        scrypt is deliberately slow, so successful checks are remembered in memory, keyed by the
        user, the stored hash (a changed password invalidates the entry) and a keyed digest of
        the presented password; a repeated Basic-auth request then costs one indexed read.
        """
        with self._read() as conn:
            row = conn.execute(
                sa.select(users.c.password_hash).where(users.c.username == username)
            ).first()
        if row is None or not row[0]:
            return False
        stored: str = row[0]
        presented = hmac.new(self._pepper, password.encode("utf-8"), hashlib.sha256).digest()
        key = (username, stored, presented)
        with self._pw_lock:
            if key in self._pw_cache:
                self._pw_cache.move_to_end(key)
                return True
        if not verify_password(password, stored):
            return False
        with self._pw_lock:
            self._pw_cache[key] = None
            while len(self._pw_cache) > _PASSWORD_CACHE_SIZE:
                self._pw_cache.popitem(last=False)
        return True

    # --- subscriptions and settings -------------------------------------------------------

    @staticmethod
    def _subscribe(conn: sa.Connection, user_id: int, author: str) -> None:
        """Follow ``author``, who must be a user of this hub (authors become users when their
        first pulse is stored): a misspelt name would otherwise be a feed that never fills."""
        known = conn.execute(sa.select(users.c.id).where(users.c.username == author)).first()
        if known is None:
            raise NotFoundError(f"no such author: {author} (authors are the hub's users)")
        exists = conn.execute(
            sa.select(subscriptions.c.author).where(
                subscriptions.c.user_id == user_id, subscriptions.c.author == author
            )
        ).first()
        if exists is None:
            conn.execute(subscriptions.insert().values(user_id=user_id, author=author))

    def subscribe(self, username: str, author: str) -> None:
        """Subscribe ``username`` to ``author``'s pulses (a no-op if already subscribed)."""
        if not author.strip():
            raise HubError("empty author name to subscribe to")
        with self._write() as conn:
            self._subscribe(conn, self._user_id(conn, username), author.strip())

    def unsubscribe(self, username: str, author: str) -> bool:
        """Drop a subscription; False if there was none. The default author stays implied."""
        with self._write() as conn:
            result = conn.execute(
                subscriptions.delete().where(
                    subscriptions.c.user_id == self._user_id(conn, username),
                    subscriptions.c.author == author,
                )
            )
        return bool(result.rowcount)

    def subscriptions(self, username: str) -> list[str]:
        """The authors ``username`` follows: the default author first (every user follows it, as
        every OTX user follows AlienVault), then the others by name. ``NotFoundError`` for an
        unknown user."""
        with self._read() as conn:
            user_id = self._user_id(conn, username)
            default = self._setting(conn, "default_author")
            authors = [
                r[0]
                for r in conn.execute(
                    sa.select(subscriptions.c.author)
                    .where(subscriptions.c.user_id == user_id)
                    .order_by(subscriptions.c.author)
                )
            ]
        if default is None:
            return authors
        return [default, *(a for a in authors if a != default)]

    def set_default_author(self, name: str | None) -> None:
        """Make every user follow ``name`` (``None``: nobody by default)."""
        with self._write() as conn:
            self._put_setting(conn, "default_author", name.strip() if name else None)

    def default_author(self) -> str | None:
        """The author every user follows, if one is set."""
        with self._read() as conn:
            return self._setting(conn, "default_author")

    def authors(self) -> list[str]:
        """Every author with at least one pulse, by name."""
        with self._read() as conn:
            query = sa.select(pulses.c.author_name).distinct().order_by(pulses.c.author_name)
            return [r[0] for r in conn.execute(query)]

    # --- pulses: writing ------------------------------------------------------------------

    @staticmethod
    def _check(pulse: Pulse) -> None:
        if not is_pulse_id(pulse.id):
            raise HubError(f"invalid pulse id {pulse.id!r}: expected 24 lower-case hex digits")
        for ind in pulse.indicators:
            canonical_type(ind.type)  # ValueError for an unknown type

    @staticmethod
    def _pulse_row(pulse: Pulse, label: int, seq: int) -> dict[str, Any]:
        return {
            "id": pulse.id,
            "seq": seq,
            "label": label,
            "name": pulse.name,
            "description": pulse.description,
            "author_name": pulse.author_name,
            "created": pulse.created,
            "modified": pulse.modified,
            "revision": pulse.revision,
            "tlp": pulse.tlp,
            "public": pulse.public,
            "adversary": pulse.adversary,
            "targeted_countries": list(pulse.targeted_countries),
            "malware_families": list(pulse.malware_families),
            "attack_ids": list(pulse.attack_ids),
            "industries": list(pulse.industries),
            "tags": list(pulse.tags),
            "references": list(pulse.references),
            "extract_source": list(pulse.extract_source),
            "more_indicators": pulse.more_indicators,
        }

    @staticmethod
    def _number_indicators(pulse: Pulse, state: dict[str, int]) -> Pulse:
        """Give indicators without an id the next hub-wide ids (explicit ids are kept, and the
        counter moves past them); duplicate ids within a pulse are an error."""
        seen: set[int] = set()
        out: list[Indicator] = []
        for ind in pulse.indicators:
            if ind.id is None:
                state["indicator_id"] += 1
                ind = replace(ind, id=state["indicator_id"])
            else:
                state["indicator_id"] = max(state["indicator_id"], ind.id)
            assert ind.id is not None
            if ind.id in seen:
                raise HubError(f"pulse {pulse.id}: indicator id {ind.id} appears twice")
            seen.add(ind.id)
            out.append(ind)
        return replace(pulse, indicators=tuple(out))

    @staticmethod
    def _indicator_rows(pulse: Pulse) -> list[dict[str, Any]]:
        return [
            {
                "pulse_id": pulse.id,
                "id": ind.id,
                "indicator": ind.indicator,
                "type": ind.type,
                "created": ind.created,
                "title": ind.title,
                "description": ind.description,
                "content": ind.content,
                "expiration": ind.expiration,
                "is_active": ind.is_active,
                "role": ind.role,
            }
            for ind in pulse.indicators
        ]

    def _ensure_users(self, conn: sa.Connection, names: set[str]) -> None:
        """Authors are users too (an author can later be given a key with ``hub user add``)."""
        if not names:
            return
        known = {
            r[0]
            for r in conn.execute(sa.select(users.c.username).where(users.c.username.in_(names)))
        }
        missing = sorted(names - known)
        if missing:
            now = self._now()
            conn.execute(
                users.insert(),
                [{"username": n, "password_hash": None, "created": now} for n in missing],
            )

    def add_pulse(self, pulse: Pulse, *, backdate: bool = True) -> Pulse:
        """Store a new pulse; returns it with its indicators' ids filled in. ``HubError`` if a
        pulse with that id exists. Its author becomes a user if it is not one yet.
        ``backdate``: see the module documentation."""
        return self.add_pulses([pulse], backdate=backdate)[0]

    def add_pulses(
        self, items: Iterable[Pulse], *, batch_size: int = 500, backdate: bool = True
    ) -> list[Pulse]:
        """Store new pulses in batches (one transaction and one ``executemany`` per table per
        batch). Within a batch labels are allocated in ``modified`` order. Returns the stored
        pulses (for large seeds use :meth:`add_pulses_count`)."""
        out: list[Pulse] = []
        for batch in _batched(items, batch_size):
            out.extend(self._add_batch(batch, backdate))
        return out

    def add_pulses_count(
        self, items: Iterable[Pulse], *, batch_size: int = 500, backdate: bool = True
    ) -> int:
        """Like :meth:`add_pulses` but returns only how many were stored (flat memory)."""
        total = 0
        for batch in _batched(items, batch_size):
            total += len(self._add_batch(batch, backdate))
        return total

    def _add_batch(self, batch: Sequence[Pulse], backdate: bool) -> list[Pulse]:
        ids = [p.id for p in batch]
        if len(set(ids)) != len(ids):
            raise HubError("the same pulse id appears twice in one batch")
        for pulse in batch:
            self._check(pulse)
        with self._write() as conn:
            dupes = conn.execute(sa.select(pulses.c.id).where(pulses.c.id.in_(ids))).first()
            if dupes is not None:
                raise HubError(f"pulse {dupes[0]} already exists (use update)")
            state = self._lock_counters(conn)
            floor = 0 if backdate else label_to_micros(self._now())
            stored: list[Pulse] = []
            rows: list[dict[str, Any]] = []
            ind_rows: list[dict[str, Any]] = []
            for pulse in sorted(batch, key=lambda p: p.modified):
                label = max(label_to_micros(pulse.modified), floor, state["label"] + 1)
                state["label"] = label
                state["seq"] += 1
                numbered = self._number_indicators(pulse, state)
                stored.append(numbered)
                rows.append(self._pulse_row(numbered, label, state["seq"]))
                ind_rows.extend(self._indicator_rows(numbered))
            self._ensure_users(conn, {p.author_name for p in batch})
            conn.execute(pulses.insert(), rows)
            if ind_rows:
                conn.execute(indicators.insert(), ind_rows)
            self._save_counters(conn, state)
        order = {pid: n for n, pid in enumerate(ids)}
        stored.sort(key=lambda p: order[p.id])
        return stored

    def update_pulse(self, pulse: Pulse) -> Pulse:
        """Replace an existing pulse's content and indicators. The hub sets ``revision`` (old
        + 1), ``modified`` (now, and later than before), keeps ``created``, and gives the pulse
        a new seq and a new, later label. Returns the stored pulse."""
        self._check(pulse)
        with self._write() as conn:
            old = conn.execute(
                sa.select(pulses.c.created, pulses.c.modified, pulses.c.revision).where(
                    pulses.c.id == pulse.id
                )
            ).first()
            if old is None:
                raise NotFoundError(f"no such pulse: {pulse.id}")
            state = self._lock_counters(conn)
            modified = max(self._now(), old.modified + timedelta(microseconds=1))
            label = max(label_to_micros(modified), state["label"] + 1)
            state["label"] = label
            state["seq"] += 1
            new = replace(
                pulse, created=old.created, modified=modified, revision=int(old.revision) + 1
            )
            new = self._number_indicators(new, state)
            conn.execute(indicators.delete().where(indicators.c.pulse_id == pulse.id))
            row = self._pulse_row(new, label, state["seq"])
            del row["id"]
            conn.execute(pulses.update().where(pulses.c.id == pulse.id).values(**row))
            ind_rows = self._indicator_rows(new)
            if ind_rows:
                conn.execute(indicators.insert(), ind_rows)
            self._ensure_users(conn, {new.author_name})
            self._save_counters(conn, state)
        return new

    def delete_pulse(self, pulse_id: str) -> bool:
        """Remove a pulse and its indicators; False if there was none."""
        with self._write() as conn:
            conn.execute(indicators.delete().where(indicators.c.pulse_id == pulse_id))
            result = conn.execute(pulses.delete().where(pulses.c.id == pulse_id))
        return bool(result.rowcount)

    # --- pulses: reading ------------------------------------------------------------------

    @staticmethod
    def _indicator(row: Any) -> Indicator:
        return Indicator(
            id=int(row.id),
            indicator=row.indicator,
            type=row.type,
            created=row.created,
            title=row.title,
            description=row.description,
            content=row.content,
            expiration=row.expiration,
            is_active=bool(row.is_active),
            role=row.role,
        )

    def _load(self, conn: sa.Connection, rows: Sequence[Any]) -> list[Pulse]:
        """Pulses for ``rows`` of ``pulses``, with their indicators (one query per page)."""
        by_pulse: dict[str, list[Indicator]] = {r.id: [] for r in rows}
        ids = list(by_pulse)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            query = (
                sa.select(indicators)
                .where(indicators.c.pulse_id.in_(chunk))
                .order_by(indicators.c.pulse_id, indicators.c.id)
            )
            for ind in conn.execute(query):
                by_pulse[ind.pulse_id].append(self._indicator(ind))
        return [
            Pulse(
                id=r.id,
                name=r.name,
                description=r.description,
                author_name=r.author_name,
                created=r.created,
                modified=r.modified,
                revision=int(r.revision),
                tlp=r.tlp,
                public=bool(r.public),
                adversary=r.adversary,
                targeted_countries=_json_list(r.targeted_countries),
                malware_families=_json_list(r.malware_families),
                attack_ids=_json_list(r.attack_ids),
                industries=_json_list(r.industries),
                tags=_json_list(r.tags),
                references=_json_list(r.references),
                extract_source=_json_list(r.extract_source),
                more_indicators=bool(r.more_indicators),
                indicators=tuple(by_pulse[r.id]),
            )
            for r in rows
        ]

    def get_pulse(self, pulse_id: str, *, viewer: str | None = None) -> Pulse | None:
        """The pulse with ``pulse_id``, or ``None`` (also when ``viewer`` may not see it)."""
        query = sa.select(pulses).where(pulses.c.id == pulse_id)
        with self._read() as conn:
            row = conn.execute(_seen_by(query, viewer)).first()
            return None if row is None else self._load(conn, [row])[0]

    def pulse_position(self, pulse_id: str) -> tuple[datetime, int] | None:
        """The pulse's ``(label, seq)``, or ``None``."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(pulses.c.label, pulses.c.seq).where(pulses.c.id == pulse_id)
            ).first()
        return None if row is None else (micros_to_label(int(row[0])), int(row[1]))

    def max_seq(self) -> int:
        """The newest pulse write's seq (0 for an empty hub): note it when a poll starts and
        pass it as ``max_seq`` to see the hub as it was then."""
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(pulses.c.seq))).scalar() or 0)

    @staticmethod
    def _window(
        query: Any,
        author: str | None,
        begin_exclusive: datetime | None,
        end_inclusive: datetime | None,
        max_seq: int | None,
        viewer: str | None,
    ) -> Any:
        query = _seen_by(query, viewer)
        if author is not None:
            query = query.where(pulses.c.author_name == author)
        if begin_exclusive is not None:
            query = query.where(pulses.c.label > label_to_micros(begin_exclusive))
        if end_inclusive is not None:
            query = query.where(pulses.c.label <= label_to_micros(end_inclusive))
        if max_seq is not None:
            query = query.where(pulses.c.seq <= max_seq)
        return query

    @staticmethod
    def _after(query: Any, after: tuple[datetime, int] | None) -> Any:
        """Keyset: rows after the cursor (label, seq) in (label, seq) order."""
        if after is None:
            return query
        label, seq = label_to_micros(after[0]), after[1]
        return query.where(
            sa.or_(pulses.c.label > label, sa.and_(pulses.c.label == label, pulses.c.seq > seq))
        )

    def pulses_page(
        self,
        author: str | None,
        *,
        begin_exclusive: datetime | None = None,
        end_inclusive: datetime | None = None,
        after: tuple[datetime, int] | None = None,
        max_seq: int | None = None,
        limit: int = 100,
        viewer: str | None = None,
    ) -> list[PulseEntry]:
        """Up to ``limit`` pulses of ``author`` (``None``: every author) whose label lies in
        (``begin_exclusive``, ``end_inclusive``], in label order, starting after the cursor
        ``after`` (the previous page's last ``entry.cursor``), leaving out pulses written after
        ``max_seq`` and those ``viewer`` may not see (:func:`visible_to`; by default every
        pulse: the hub's own view). Uses the (author, label) index; no OFFSET."""
        if limit < 1:
            return []
        query = self._window(
            sa.select(pulses), author, begin_exclusive, end_inclusive, max_seq, viewer
        )
        query = self._after(query, after)
        query = query.order_by(pulses.c.label, pulses.c.seq).limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
            loaded = self._load(conn, rows)
        return [
            PulseEntry(p, micros_to_label(int(r.label)), int(r.seq))
            for p, r in zip(loaded, rows, strict=True)
        ]

    def pulse_keys_page(
        self,
        author: str | None,
        *,
        begin_exclusive: datetime | None = None,
        end_inclusive: datetime | None = None,
        after: tuple[datetime, int] | None = None,
        max_seq: int | None = None,
        limit: int = 100,
        viewer: str | None = None,
    ) -> list[tuple[str, int, datetime, int]]:
        """Like :meth:`pulses_page` but only (id, revision, label, seq): what a poll needs
        when the packages are already rendered (no indicators loaded)."""
        if limit < 1:
            return []
        columns = (pulses.c.id, pulses.c.revision, pulses.c.label, pulses.c.seq)
        query = self._window(
            sa.select(*columns), author, begin_exclusive, end_inclusive, max_seq, viewer
        )
        query = self._after(query, after)
        query = query.order_by(pulses.c.label, pulses.c.seq).limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [(r.id, int(r.revision), micros_to_label(int(r.label)), int(r.seq)) for r in rows]

    def get_pulses(self, pulse_ids: Sequence[str]) -> dict[str, Pulse]:
        """The pulses with these ids, by id (missing ones left out)."""
        out: dict[str, Pulse] = {}
        with self._read() as conn:
            for start in range(0, len(pulse_ids), 900):
                chunk = list(pulse_ids[start : start + 900])
                rows = conn.execute(sa.select(pulses).where(pulses.c.id.in_(chunk))).all()
                for pulse in self._load(conn, rows):
                    out[pulse.id] = pulse
        return out

    def rendered_packages(
        self, pulse_ids: Sequence[str]
    ) -> dict[str, tuple[int, datetime | None, bytes]]:
        """Stored packages by pulse id: (revision, valid until, XML)."""
        out: dict[str, tuple[int, datetime | None, bytes]] = {}
        with self._read() as conn:
            for start in range(0, len(pulse_ids), 900):
                chunk = list(pulse_ids[start : start + 900])
                query = sa.select(packages).where(packages.c.pulse_id.in_(chunk))
                for r in conn.execute(query):
                    until = None if r.valid_until is None else micros_to_label(int(r.valid_until))
                    out[r.pulse_id] = (int(r.revision), until, bytes(r.xml))
        return out

    def store_packages(self, items: Sequence[tuple[str, int, datetime | None, bytes]]) -> None:
        """Keep rendered packages: (pulse id, revision, valid until, XML)."""
        if not items:
            return
        rows = [
            {
                "pulse_id": pulse_id,
                "revision": revision,
                "valid_until": None if until is None else label_to_micros(until),
                "xml": xml,
            }
            for pulse_id, revision, until, xml in items
        ]
        with self._write() as conn:
            conn.execute(
                packages.delete().where(packages.c.pulse_id.in_([r["pulse_id"] for r in rows]))
            )
            conn.execute(packages.insert(), rows)

    def count_pulses(
        self,
        author: str | None,
        begin_exclusive: datetime | None = None,
        end_inclusive: datetime | None = None,
        max_seq: int | None = None,
        viewer: str | None = None,
    ) -> int:
        """How many pulses :meth:`pulses_page` would return over all pages."""
        query = self._window(
            sa.select(sa.func.count()).select_from(pulses),
            author,
            begin_exclusive,
            end_inclusive,
            max_seq,
            viewer,
        )
        with self._read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def search_pulses(self, q: str, limit: int = 20, page: int = 1, *, viewer: str) -> PulsePage:
        """Pulses ``viewer`` may see (:func:`visible_to`) whose name,
        description, tags or adversary contain ``q`` (any case), newest first."""
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern += "%"
        text_cols = (pulses.c.name, pulses.c.description, pulses.c.adversary)
        matches: list[Any] = [sa.func.lower(c).like(pattern, escape="\\") for c in text_cols]
        matches.append(sa.func.lower(sa.cast(pulses.c.tags, sa.Text)).like(pattern, escape="\\"))
        cond = [visible_to(viewer), sa.or_(*matches)]
        return self._page(cond, [pulses.c.modified.desc(), pulses.c.id], limit, page)

    def pulses_by_authors(
        self,
        authors: Sequence[str],
        *,
        viewer: str,
        modified_since: datetime | None = None,
        limit: int = 50,
        page: int = 1,
    ) -> PulsePage:
        """The REST API's author listings: the pulses of ``authors`` that ``viewer`` may see
        (:func:`visible_to`), modified after ``modified_since``, newest first, page ``page``
        (1-based) of ``limit``."""
        if not authors:
            return PulsePage(0, [])
        cond: list[Any] = [pulses.c.author_name.in_(list(authors)), visible_to(viewer)]
        if modified_since is not None:
            cond.append(pulses.c.modified > modified_since)
        return self._page(cond, [pulses.c.modified.desc(), pulses.c.id], limit, page)

    def _page(self, cond: list[Any], order: list[Any], limit: int, page: int) -> PulsePage:
        limit = max(1, limit)
        page = max(1, page)
        with self._read() as conn:
            count = int(
                conn.execute(sa.select(sa.func.count()).select_from(pulses).where(*cond)).scalar()
                or 0
            )
            rows = conn.execute(
                sa.select(pulses)
                .where(*cond)
                .order_by(*order)
                .limit(limit)
                .offset((page - 1) * limit)
            ).all()
            return PulsePage(count, self._load(conn, rows))

    def indicator_lookup(
        self, type_: str, value: str, *, viewer: str | None = None
    ) -> list[IndicatorHit]:
        """Every pulse (that ``viewer`` may see) carrying the indicator ``value`` of OTX type
        ``type_`` (any letter case of the type; the value must match exactly), newest first."""
        kind = canonical_type(type_)
        query = (
            sa.select(
                indicators,
                pulses.c.name.label("pulse_name"),
                pulses.c.author_name,
                pulses.c.modified.label("pulse_modified"),
            )
            .join(pulses, pulses.c.id == indicators.c.pulse_id)
            .where(indicators.c.type == kind, indicators.c.indicator == value)
            .order_by(pulses.c.modified.desc(), pulses.c.id)
        )
        with self._read() as conn:
            return [
                IndicatorHit(
                    r.pulse_id, r.pulse_name, r.author_name, r.pulse_modified, self._indicator(r)
                )
                for r in conn.execute(_seen_by(query, viewer))
            ]

    def stats(self) -> dict[str, int]:
        """Row counts: users, pulses, indicators."""
        with self._read() as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)
                for name, t in (("users", users), ("pulses", pulses), ("indicators", indicators))
            }


def _batched(items: Iterable[Pulse], size: int) -> Iterator[list[Pulse]]:
    batch: list[Pulse] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

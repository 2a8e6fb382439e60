"""The web console's users, their sessions and the login throttle, in the manager's database.

Kept beside the feeds (tables in :mod:`.schema`, revision ``feeds_0011``) so that every node of a
cluster knows the same users and any node serves a session another began. What it guards and
how:

* **Passwords** are hashed with argon2id (argon2-cffi's :class:`PasswordHasher`, RFC 9106's
  parameters): a stolen database gives no password away cheaply. A hash made with older
  parameters is renewed at the next good login.
* **Verifying** costs the same whether or not the user exists: an unknown name is checked
  against a hash of a random password, so the time of an answer does not tell which names
  exist. (The web layer pads every refusal to a fixed minimum on top: guessing stays slow.)
* **Sessions** are server-side: the browser holds a random 256-bit token, the database only its
  SHA-256, so a copy of the database opens no session. A session ends at logout (its row is
  deleted), after :data:`IDLE_TIMEOUT` without a request, after :data:`MAX_SESSION_AGE` in any
  case, and when its user's password changes or the user is deleted. ``last_seen`` is written
  at most every :data:`TOUCH_EVERY`, so a page's requests do not each write to the database.
* **CSRF tokens** are derived from the session token (an HMAC of it), so they need no storage
  and the database cannot give them away either.
* **Throttling**: every login attempt from an address (an IPv6 client by its /64, since one
  host has many of those) is recorded *before* its password is checked, in the same write
  transaction as the count, so a burst of parallel guesses is counted too (exactly on SQLite,
  whose writers queue; on PostgreSQL two attempts at the same instant may both pass the check).
  After :data:`MAX_FAILURES` within :data:`FAILURE_WINDOW`, the address is refused, the right
  password too, until the oldest of them leaves the window: about five guesses per quarter of
  an hour at most. A good login clears its address's record.

Clocks are injected (``now``), so expiry and throttling are tested without waiting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import sqlalchemy as sa
import sqlalchemy.exc
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from feedgate.db import aware_utc, naive_utc, read_transaction, write_transaction
from feedgate.migrate import upgrade

from .schema import console_login_failures as failures
from .schema import console_sessions as sessions
from .schema import console_users as users

__all__ = [
    "FAILURE_WINDOW",
    "IDLE_TIMEOUT",
    "MAX_FAILURES",
    "MAX_PASSWORD_LENGTH",
    "MAX_SESSION_AGE",
    "MIN_PASSWORD_LENGTH",
    "TOUCH_EVERY",
    "ConsoleSession",
    "ConsoleUser",
    "ConsoleUserError",
    "ConsoleUsers",
    "LoginRefused",
    "NewSession",
    "check_name",
    "check_password",
    "csrf_token",
    "new_password",
    "throttle_key",
]

#: The shortest password taken: shorter ones fall to an offline guess at an argon2 hash.
MIN_PASSWORD_LENGTH: Final = 12
#: The longest: nobody types more, and a form is not a place for megabytes.
MAX_PASSWORD_LENGTH: Final = 1024
#: A session unused this long has ended.
IDLE_TIMEOUT: Final = timedelta(minutes=30)
#: A session this old has ended, used or not (a stolen cookie does not last).
MAX_SESSION_AGE: Final = timedelta(hours=12)
#: ``last_seen`` is written when it is older than this: idle expiry is this exact.
TOUCH_EVERY: Final = timedelta(minutes=1)
#: Attempts that did not succeed, from one address within :data:`FAILURE_WINDOW`, after which
#: the address is refused until the oldest of them leaves the window.
MAX_FAILURES: Final = 5
FAILURE_WINDOW: Final = timedelta(minutes=15)

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_CSRF_LABEL: Final = b"feedgate console csrf"


class ConsoleUserError(ValueError):
    """A name or password that cannot be used, a name that exists or does not: one line that
    says what to do."""


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """A console user as listed (never with the hash)."""

    name: str
    created: datetime
    password_changed: datetime
    last_login: datetime | None


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A live session: whose it is, its CSRF token, when it began and was last used."""

    user: str
    csrf_token: str
    created: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just begun: ``token`` goes into the cookie and is kept nowhere else."""

    token: str
    session: ConsoleSession


class LoginRefused(Exception):
    """A login that did not begin a session: ``reason`` "wrong" (name or password; which one is
    not said) or "throttled" (too many attempts from the address: ``retry_after`` says how long
    until the next is taken)."""

    def __init__(
        self, reason: Literal["wrong", "throttled"], retry_after: timedelta | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def check_name(name: str) -> str:
    """``name`` if it can be a console user's name, else :class:`ConsoleUserError`."""
    if not _NAME.fullmatch(name):
        shown = name[:40] if name.isprintable() else ascii(name[:40])
        raise ConsoleUserError(
            f"user name {shown!r}: 1 to 64 letters, digits, '.', '_', '@' or '-', starting "
            "with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    """``password`` if it is long enough to keep (and short enough to take), else
    :class:`ConsoleUserError` saying how long one must be (never what was given)."""
    if not password:
        raise ConsoleUserError(
            f"the password is empty: give one of at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConsoleUserError(
            f"the password has {len(password)} characters: it needs at least "
            f"{MIN_PASSWORD_LENGTH} (a short one is guessed from a copy of the database)"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ConsoleUserError(f"the password is over {MAX_PASSWORD_LENGTH} characters")
    return password


def new_password() -> str:
    """A random password (128 bits, 22 URL-safe characters): what ``feedgate up`` gives
    ``admin``."""
    return secrets.token_urlsafe(16)


def csrf_token(session_token: str) -> str:
    """The CSRF token of the session whose cookie holds ``session_token``: an HMAC of it, so it
    is the same on every node, needs no storage, and cannot be made from the database."""
    mac = hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def throttle_key(address: str | None) -> str:
    """What throttling counts attempts by: the client's address, an IPv6 one as its /64 (one
    host gets a whole /64), anything unparsable as given (cut to 64 characters)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is 192.0.2.1
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ConsoleUsers:
    """Console users, sessions and the login throttle over an engine from
    :func:`feedgate.db.engine` (the schema is brought up to date on open, as the stores do).

    ``now`` is the clock (aware UTC); ``hasher`` the argon2 parameters (default: argon2-cffi's,
    RFC 9106's low-memory profile); the other arguments are the limits of the module doc.
    Thread-safe: every method runs in a transaction of its own.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        now: Callable[[], datetime] = _utcnow,
        hasher: PasswordHasher | None = None,
        idle: timedelta = IDLE_TIMEOUT,
        max_age: timedelta = MAX_SESSION_AGE,
        max_failures: int = MAX_FAILURES,
        failure_window: timedelta = FAILURE_WINDOW,
    ) -> None:
        upgrade(engine, "feeds")
        self.engine = engine
        self.now = now
        self.hasher = hasher or PasswordHasher()
        self.idle = idle
        self.max_age = max_age
        self.max_failures = max_failures
        self.failure_window = failure_window
        self._dummy: str | None = None

    # --- users -----------------------------------------------------------------------------

    def add(self, name: str, password: str) -> ConsoleUser:
        """A new user; :class:`ConsoleUserError` for a bad name or password or one that
        exists."""
        check_name(name)
        hashed = self.hasher.hash(check_password(password))  # before the write lock
        at = naive_utc(self.now())
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(
                    users.insert().values(
                        name=name, password_hash=hashed, created=at, password_changed=at
                    )
                )
        except sqlalchemy.exc.IntegrityError:
            raise ConsoleUserError(
                f"a console user named {name} exists (change its password with: feedgate "
                f"admin set-password {name} --password-env VAR)"
            ) from None
        return ConsoleUser(name, aware_utc(at), aware_utc(at), None)

    def get(self, name: str) -> ConsoleUser | None:
        with read_transaction(self.engine) as conn:
            row = conn.execute(
                sa.select(users.c.name, users.c.created, users.c.password_changed,
                          users.c.last_login).where(users.c.name == name)
            ).first()  # fmt: skip
        return None if row is None else self._user(row)

    def list(self) -> list[ConsoleUser]:
        """Every user, by name."""
        with read_transaction(self.engine) as conn:
            rows = conn.execute(
                sa.select(users.c.name, users.c.created, users.c.password_changed,
                          users.c.last_login).order_by(users.c.name)
            ).all()  # fmt: skip
        return [self._user(row) for row in rows]

    @staticmethod
    def _user(row: Any) -> ConsoleUser:
        return ConsoleUser(
            row.name,
            aware_utc(row.created),
            aware_utc(row.password_changed),
            aware_utc(row.last_login) if row.last_login is not None else None,
        )

    def delete(self, name: str) -> bool:
        """Delete a user and end their sessions; False if there was none."""
        with write_transaction(self.engine) as conn:
            uid = self._uid(conn, name)
            if uid is None:
                return False
            conn.execute(sessions.delete().where(sessions.c.user_id == uid))
            conn.execute(users.delete().where(users.c.id == uid))
        return True

    def set_password(self, name: str, password: str) -> None:
        """Give ``name`` a new password and end every session of theirs (whoever knew the old
        one is logged out); :class:`ConsoleUserError` for no such user or a bad password."""
        hashed = self.hasher.hash(check_password(password))
        with write_transaction(self.engine) as conn:
            uid = self._uid(conn, name)
            if uid is None:
                raise ConsoleUserError(
                    f"no console user named {name} (see feedgate admin list; add one with: "
                    f"feedgate admin add {name} --password-env VAR)"
                )
            conn.execute(
                users.update()
                .where(users.c.id == uid)
                .values(password_hash=hashed, password_changed=naive_utc(self.now()))
            )
            conn.execute(sessions.delete().where(sessions.c.user_id == uid))

    @staticmethod
    def _uid(conn: sa.Connection, name: str) -> int | None:
        found = conn.execute(sa.select(users.c.id).where(users.c.name == name)).scalar()
        return None if found is None else int(found)

    def verify(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s, in about the same time either way (an unknown
        name is checked against a hash of a random password; see the module doc)."""
        with read_transaction(self.engine) as conn:
            stored = conn.execute(
                sa.select(users.c.password_hash).where(users.c.name == name)
            ).scalar()
        return self._check(stored, password)

    def _check(self, stored: str | None, password: str) -> bool:
        if stored is None:
            if self._dummy is None:
                self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
            stored = self._dummy
            known = False
        else:
            known = True
        try:
            self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return known

    # --- logging in and out -----------------------------------------------------------------

    def throttled(self, address: str | None) -> timedelta | None:
        """How long ``address`` must wait before a login is taken from it; None: not
        throttled."""
        now = naive_utc(self.now())
        with read_transaction(self.engine) as conn:
            return self._wait(conn, throttle_key(address), now)

    def _wait(self, conn: sa.Connection, key: str, now: datetime) -> timedelta | None:
        recent = (
            sa.select(failures.c.at)
            .where(failures.c.address == key, failures.c.at > now - self.failure_window)
            .order_by(failures.c.at.desc())
            .limit(self.max_failures)
        )
        times: list[datetime] = list(conn.execute(recent).scalars())
        if len(times) < self.max_failures:
            return None
        return max(times[-1] + self.failure_window - now, timedelta(seconds=1))

    def login(self, name: str, password: str, address: str | None) -> NewSession:
        """Begin a session for ``name`` if ``password`` is theirs and ``address`` is not
        throttled; :class:`LoginRefused` otherwise (the attempt counted against the address,
        before the password is checked: see the module doc)."""
        key = throttle_key(address)
        now = naive_utc(self.now())
        with write_transaction(self.engine) as conn:
            wait = self._wait(conn, key, now)
            if wait is not None:
                raise LoginRefused("throttled", wait)
            conn.execute(failures.delete().where(failures.c.at <= now - self.failure_window))
            conn.execute(failures.insert().values(address=key, at=now))
            stored = conn.execute(
                sa.select(users.c.password_hash).where(users.c.name == name)
            ).scalar()
        if not self._check(stored, password):
            raise LoginRefused("wrong")
        assert stored is not None
        token = secrets.token_urlsafe(32)
        with write_transaction(self.engine) as conn:
            uid = self._uid(conn, name)
            if uid is None:  # deleted between the check and now
                raise LoginRefused("wrong")
            conn.execute(failures.delete().where(failures.c.address == key))  # this one too
            values: dict[str, object] = {"last_login": now}
            if self.hasher.check_needs_rehash(stored):
                values["password_hash"] = self.hasher.hash(password)
            conn.execute(users.update().where(users.c.id == uid).values(**values))
            self._purge(conn, now)
            conn.execute(
                sessions.insert().values(
                    token_digest=_digest(token),
                    user_id=uid,
                    created=now,
                    last_seen=now,
                    address=key,
                )
            )
        return NewSession(token, ConsoleSession(name, csrf_token(token), *(aware_utc(now),) * 2))

    def _purge(self, conn: sa.Connection, now: datetime) -> None:
        """Delete the sessions that have ended by the clock (idle or too old)."""
        conn.execute(
            sessions.delete().where(
                sa.or_(
                    sessions.c.last_seen <= now - self.idle,
                    sessions.c.created <= now - self.max_age,
                )
            )
        )

    def session(self, token: str | None) -> ConsoleSession | None:
        """The live session whose cookie holds ``token`` (its use noted), or None: no such
        session, or it has ended (then its row is deleted)."""
        if not token or len(token) > 200:
            return None
        digest = _digest(token)
        now = naive_utc(self.now())
        query = (
            sa.select(users.c.name, sessions.c.created, sessions.c.last_seen)
            .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
            .where(sessions.c.token_digest == digest)
        )
        with read_transaction(self.engine) as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        if row.last_seen <= now - self.idle or row.created <= now - self.max_age:
            self.logout(token)
            return None
        last_seen = row.last_seen
        if now - last_seen >= TOUCH_EVERY:
            last_seen = now
            with write_transaction(self.engine) as conn:
                conn.execute(
                    sessions.update()
                    .where(sessions.c.token_digest == digest, sessions.c.last_seen < now)
                    .values(last_seen=now)
                )
        return ConsoleSession(
            row.name, csrf_token(token), aware_utc(row.created), aware_utc(last_seen)
        )

    def logout(self, token: str | None) -> bool:
        """End the session whose cookie holds ``token``; False if there was none."""
        if not token:
            return False
        with write_transaction(self.engine) as conn:
            done = conn.execute(sessions.delete().where(sessions.c.token_digest == _digest(token)))
        return bool(done.rowcount)

    def session_count(self, name: str) -> int:
        """How many sessions of ``name`` are stored (ended ones not yet purged included)."""
        with read_transaction(self.engine) as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
                    .where(users.c.name == name)
                ).scalar_one()
            )

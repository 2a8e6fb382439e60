"""The quarantine: messages a quarantine rule kept, in the manager's database.

The gateway (and the milter, through :meth:`QuarantineStore.add`, which has the injected
``quarantine(raw, envelope, verdict) -> id`` shape) answers 250 only after :meth:`add`
committed, so a quarantined message is never lost. The one place quarantined messages are read,
released and deleted: ``feedgate quarantine`` and ``/api/v1/quarantine`` both call these methods.

A release sends the message's original bytes to its envelope's recipients (not the headers'
To/Cc) through the relay recorded when it was quarantined, or one given, with the relay TLS
recorded with it (the gateway's ``--relay-tls`` and CA file, feeds_0009; ``may`` when none
was: the milter's, and messages held before), or the TLS given: a gateway that relays only
over TLS does not see its quarantined mail released in plain text. It is recorded (who,
when) and the message leaves the list of held messages. A release the relay refuses leaves the
message held, with the relay's answer recorded and shown. Everything (held or released) is
deleted :data:`DEFAULT_RETENTION` after it was quarantined, by :meth:`expire`, which the gateway
and ``feedgate serve`` call periodically.

**Sent once, cluster-wide.** Before sending, a release *claims* the message with one
conditional UPDATE (not released, and no claim or a lapsed one: atomic on SQLite's single
writer and under PostgreSQL's row lock, where the second UPDATE re-reads the row the first
committed). Whoever loses is told who is releasing it and since when
(:class:`ReleaseInProgress`). The claim lasts :data:`DEFAULT_CLAIM_LEASE`; the send is cut
after half of it (``relay.send``'s ``deadline``), so a live release never outlives its claim
and the other half absorbs clock differences between nodes. A releaser that dies leaves its
claim to lapse, after which anyone may release the message. A refusal clears the claim and
records the error (only if the claim is still the releaser's own: a release that lost its claim
writes nothing over another's outcome).
"""

from __future__ import annotations

import email.errors
import email.header
import email.parser
import email.policy
import json
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
import sqlalchemy.exc

from feedgate.db import aware_utc, naive_utc, read_transaction, write_transaction
from feedgate.migrate import upgrade

from . import relay as relaying
from .model import Envelope
from .policy import Verdict
from .rewrite import split_message
from .schema import quarantine_table as q

__all__ = [
    "DEFAULT_CLAIM_LEASE",
    "DEFAULT_RETENTION",
    "QuarantineError",
    "QuarantineNotFound",
    "QuarantineStore",
    "QuarantinedMessage",
    "ReleaseInProgress",
    "ReleaseRefused",
]

DEFAULT_RETENTION: Final = timedelta(days=14)
#: How long a release's claim keeps others from sending the same message (module doc).
DEFAULT_CLAIM_LEASE: Final = timedelta(minutes=10)
log = logging.getLogger(__name__)
_MAX_SHOWN: Final = 998  # Subject and Message-ID as kept


class QuarantineError(Exception):
    """A quarantine operation that cannot be done, with what to do instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QuarantineNotFound(QuarantineError):
    """No quarantined message has that id (expired, deleted, or mistyped)."""


class ReleaseRefused(QuarantineError):
    """The relay did not take a released message; it stays held, the error recorded."""


class ReleaseInProgress(QuarantineError):
    """Another node or admin is releasing the message right now (its claim holds)."""


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    """One quarantined message without its bytes (:meth:`QuarantineStore.raw` has them)."""

    id: str
    at: datetime
    envelope: Envelope
    message_id: str | None
    subject: str | None
    size: int
    rules: tuple[str, ...]
    matches: tuple[dict[str, Any], ...]
    relay: str | None
    #: The relay TLS a release uses unless given one: a level of ``relay.TLS_LEVELS`` and,
    #: for ``verify``, the CA file trusted (module doc).
    relay_tls: str = relaying.DEFAULT_TLS
    relay_ca_file: str | None = None
    released_at: datetime | None = None
    released_by: str | None = None
    release_error: str | None = None
    release_error_at: datetime | None = None
    claimed_by: str | None = None  # a release in progress (or one that died): who, where
    claimed_at: datetime | None = None
    claim_until: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row of ``feedgate quarantine list --format jsonl`` and the REST API."""
        return {
            "id": self.id,
            "time": self.at.isoformat(),
            "envelope": self.envelope.to_dict(),
            "message_id": self.message_id,
            "subject": self.subject,
            "size": self.size,
            "rules": list(self.rules),
            "matches": list(self.matches),
            "relay": self.relay,
            "relay_tls": self.relay_tls,
            "relay_ca_file": self.relay_ca_file,
            "released_at": self.released_at.isoformat() if self.released_at else None,
            "released_by": self.released_by,
            "release_error": self.release_error,
            "release_error_at": (
                self.release_error_at.isoformat() if self.release_error_at else None
            ),
            "claimed_by": self.claimed_by,
            "claimed_at": self.claimed_at.isoformat() if self.claimed_at else None,
            "claim_until": self.claim_until.isoformat() if self.claim_until else None,
        }


def _from_db(moment: datetime | None) -> datetime | None:
    return None if moment is None else aware_utc(moment)


def _headers(raw: bytes) -> tuple[str | None, str | None]:
    """The Message-ID and the decoded Subject, read from the header block alone."""
    block, _sep, _body = split_message(raw)
    try:
        parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(block)
    except (ValueError, TypeError, email.errors.MessageError):
        return None, None

    def text(name: str) -> str | None:
        value = parsed.get(name)
        if value is None:
            return None
        try:
            shown = str(email.header.make_header(email.header.decode_header(str(value))))
        except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
            shown = str(value)
        shown = " ".join(shown.split())
        return shown[:_MAX_SHOWN]

    return text("Message-ID"), text("Subject")


def _message(row: Any) -> QuarantinedMessage:
    env = json.loads(row.envelope)
    return QuarantinedMessage(
        id=row.id,
        at=_from_db(row.at) or datetime.now(UTC),
        envelope=Envelope(
            mail_from=env["mail_from"],
            rcpt_tos=tuple(env["rcpt_tos"]),
            client_ip=env.get("client_ip"),
            helo=env.get("helo"),
            queue_id=env.get("queue_id"),
        ),
        message_id=row.message_id,
        subject=row.subject,
        size=row.size,
        rules=tuple(json.loads(row.rules)),
        matches=tuple(json.loads(row.matches)),
        relay=row.relay,
        relay_tls=row.relay_tls or relaying.DEFAULT_TLS,
        relay_ca_file=row.relay_ca_file,
        released_at=_from_db(row.released_at),
        released_by=row.released_by,
        release_error=row.release_error,
        release_error_at=_from_db(row.release_error_at),
        claimed_by=row.claimed_by,
        claimed_at=_from_db(row.claimed_at),
        claim_until=_from_db(row.claim_until),
    )


_LISTED: Final = [c for c in q.c if c.name not in ("raw", "claim_token")]
#: What a release sets when it ends, either way: no claim.
_UNCLAIMED: Final = dict.fromkeys(("claim_token", "claimed_by", "claimed_at", "claim_until"))


def _when(moment: datetime | None) -> str:
    return "?" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class QuarantineStore:
    """The quarantine over an engine from :func:`feedgate.db.engine` (module doc).

    ``retention`` is how long a message is kept; ``now`` the clock messages are dated and
    claims are timed with; ``claim_lease`` how long a release's claim holds; ``node`` names
    this host in a claim (default: its host name), so a loser is told where the release runs.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        claim_lease: timedelta = DEFAULT_CLAIM_LEASE,
        node: str | None = None,
    ) -> None:
        if retention <= timedelta(0):
            raise QuarantineError("the quarantine's retention must be more than 0 days")
        if claim_lease <= timedelta(0):
            raise QuarantineError("a release's claim must last more than 0 seconds")
        upgrade(engine, "feeds")  # feeds_0006 made the table, feeds_0008 its claim columns
        self.engine = engine
        self.retention = retention
        self.claim_lease = claim_lease
        self.node = node or socket.gethostname()
        self._now = now

    def add(
        self,
        raw: bytes,
        envelope: Envelope,
        verdict: Verdict,
        *,
        relay: str | None = None,
        tls: relaying.RelayTls | None = None,
    ) -> str:
        """Keep ``raw`` with its envelope and verdict; the id, once committed. ``relay`` is
        the ``HOST:PORT`` a release sends it to by default, ``tls`` the TLS it is sent with
        by default (the gateway's towards that relay; None: ``may``)."""
        message_id, subject = _headers(raw)
        sources = sorted({m.source for m in verdict.matches})
        ident = secrets.token_hex(8)
        with write_transaction(self.engine) as conn:
            conn.execute(
                q.insert().values(
                    id=ident,
                    at=naive_utc(self._now()),
                    envelope=json.dumps(envelope.to_dict()),
                    message_id=message_id,
                    subject=subject,
                    size=len(raw),
                    rules=json.dumps(list(verdict.rules)),
                    matches=json.dumps([m.to_dict() for m in verdict.matches], default=str),
                    sources="," + ",".join(sources) + "," if sources else ",",
                    relay=relay,
                    relay_tls=None if tls is None else tls.level,
                    relay_ca_file=None if tls is None else tls.ca_file,
                    raw=raw,
                )
            )
        return ident

    def list(
        self,
        *,
        since: datetime | None = None,
        source: str | None = None,
        released: bool = False,
    ) -> list[QuarantinedMessage]:
        """The messages held (and, with ``released``, those released too), newest first;
        ``since`` and ``source`` narrow them to a time and a source that matched."""
        query = sa.select(*_LISTED).order_by(q.c.at.desc(), q.c.id)
        if since is not None:
            query = query.where(q.c.at >= naive_utc(since))
        if source:
            query = query.where(q.c.sources.contains(f",{source},", autoescape=True))
        if not released:
            query = query.where(q.c.released_at.is_(None))
        with read_transaction(self.engine) as conn:
            return [_message(row) for row in conn.execute(query)]

    def get(self, ident: str) -> QuarantinedMessage:
        """The message ``ident`` (held or released); :class:`QuarantineNotFound` if none."""
        with read_transaction(self.engine) as conn:
            row = conn.execute(sa.select(*_LISTED).where(q.c.id == ident)).first()
        if row is None:
            raise self._unknown(ident)
        return _message(row)

    def raw(self, ident: str) -> bytes:
        """The bytes of message ``ident``, exactly as they were received."""
        with read_transaction(self.engine) as conn:
            raw = conn.execute(sa.select(q.c.raw).where(q.c.id == ident)).scalar()
        if raw is None:
            raise self._unknown(ident)
        return bytes(raw)

    def release(
        self,
        ident: str,
        *,
        by: str,
        relay: str | None = None,
        timeout: float = relaying.DEFAULT_TIMEOUT,
        tls: relaying.RelayTls | None = None,
    ) -> QuarantinedMessage:
        """Send message ``ident`` to its envelope's recipients through ``relay`` (``HOST:PORT``)
        or the relay recorded with it, with ``tls`` or the TLS recorded with it (``may`` when
        none was), once across every node (module doc), and record that ``by`` released it.
        Raises :class:`ReleaseRefused` (the relay's answer recorded; the message stays held),
        :class:`ReleaseInProgress`, :class:`QuarantineNotFound`, or :class:`QuarantineError`
        (already released, no relay known, a relay that is not ``HOST:PORT``, a recorded TLS
        that cannot be used here, such as a CA file this host cannot read)."""
        held = self.get(ident)
        if held.released_at is not None:
            raise self._released(held)
        target = relay or held.relay
        if not target:
            raise QuarantineError(
                f"message {ident} has no relay recorded; give one (--relay HOST:PORT)"
            )
        try:
            host, port = relaying.parse_address(target)
        except relaying.RelayAddressError as exc:
            raise QuarantineError(f"relay: {exc}") from None
        if tls is None:
            tls = self._recorded_tls(held)
        token = self._claim(ident, by)
        try:
            raw = self.raw(ident)
        except BaseException:
            self._unclaim(ident, token)
            raise
        reply = relaying.send(
            host,
            port,
            held.envelope,
            raw,
            timeout=timeout,
            tls=tls,
            deadline=self.claim_lease.total_seconds() / 2,
        )
        moment = naive_utc(self._now())
        if not reply.accepted:
            # Our own words when nothing answered (unreachable, TLS failed, ...): they name
            # the relay; else what the relay answered.
            why = reply.detail or f"relay {target} answered: {reply.reply}"
            with write_transaction(self.engine) as conn:
                conn.execute(
                    q.update()
                    .where(q.c.id == ident, q.c.claim_token == token)
                    .values(release_error=why, release_error_at=moment, **_UNCLAIMED)
                )
            raise ReleaseRefused(
                f"message {ident} not released: {why} (it stays in the quarantine)"
            )
        try:
            with write_transaction(self.engine) as conn:
                done = conn.execute(
                    q.update()
                    .where(q.c.id == ident, q.c.released_at.is_(None))
                    .values(released_at=moment, released_by=by, release_error=None, **_UNCLAIMED)
                ).rowcount
        except sqlalchemy.exc.SQLAlchemyError as exc:
            # Sent, not recorded: the claim stays, so nobody sends it again while it holds.
            until = _when(self._now() + self.claim_lease)
            raise QuarantineError(
                f"message {ident} was sent ({reply.reply}), but recording the release failed"
                f" ({type(exc).__name__}); its claim keeps it from being sent again until"
                f" {until}: delete it (`feedgate quarantine delete {ident}`) before then unless"
                " you mean it to go twice"
            ) from exc
        if done == 0:  # deleted meanwhile, or released by another after our claim lapsed
            log.warning("quarantined message %s was sent, but was no longer held", ident)
        return replace(
            held,
            released_at=aware_utc(moment),
            released_by=by,
            release_error=None,
            claimed_by=None,
            claimed_at=None,
            claim_until=None,
        )

    @staticmethod
    def _recorded_tls(held: QuarantinedMessage) -> relaying.RelayTls:
        """The TLS recorded with ``held``, ready to use; :class:`QuarantineError` saying what
        to give when it cannot be (a CA file gone, or not readable on this node)."""
        try:
            return relaying.relay_tls(held.relay_tls, held.relay_ca_file)
        except relaying.RelayTlsError as exc:
            recorded = held.relay_tls + (
                f" with {held.relay_ca_file}" if held.relay_ca_file else ""
            )
            raise QuarantineError(
                f"message {held.id} is released with the relay TLS recorded when it was"
                f" quarantined ({recorded}), which cannot be used here: {exc}. Give the TLS"
                " for this release (--relay-tls, with --relay-ca-file for verify; relay_tls in"
                " the REST API)"
            ) from None

    def _claim(self, ident: str, by: str) -> str:
        """Take message ``ident`` for a release: a new token, or the reason it cannot be
        taken (released, claimed by a live release, gone)."""
        token = secrets.token_hex(16)
        now = self._now()
        stamp = naive_utc(now)
        with write_transaction(self.engine) as conn:
            taken = conn.execute(
                q.update()
                .where(
                    q.c.id == ident,
                    q.c.released_at.is_(None),
                    sa.or_(q.c.claim_until.is_(None), q.c.claim_until <= stamp),
                )
                .values(
                    claim_token=token,
                    claimed_by=f"{by} on {self.node}"[:300],
                    claimed_at=stamp,
                    claim_until=naive_utc(now + self.claim_lease),
                )
            ).rowcount
        if taken == 1:
            return token
        current = self.get(ident)  # QuarantineNotFound when it was deleted meanwhile
        if current.released_at is not None:
            raise self._released(current)
        if current.claimed_by is None:  # that release ended between our UPDATE and this read
            raise ReleaseInProgress(
                f"message {ident} was being released by another node or admin a moment ago;"
                f" see `feedgate quarantine show {ident}`, then release it again if it is"
                " still held"
            )
        raise ReleaseInProgress(
            f"message {ident} is being released by {current.claimed_by} since"
            f" {_when(current.claimed_at)}; it is not sent twice (if that release died, its"
            f" claim lapses at {_when(current.claim_until)}: release it again then)"
        )

    def _unclaim(self, ident: str, token: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                q.update().where(q.c.id == ident, q.c.claim_token == token).values(**_UNCLAIMED)
            )

    @staticmethod
    def _released(held: QuarantinedMessage) -> QuarantineError:
        when = held.released_at.isoformat(timespec="seconds") if held.released_at else "?"
        return QuarantineError(
            f"message {held.id} was already released by {held.released_by} at {when};"
            " it is not sent twice"
        )

    def delete(self, ident: str) -> None:
        """Delete message ``ident`` for good; :class:`QuarantineNotFound` if none."""
        with write_transaction(self.engine) as conn:
            if conn.execute(q.delete().where(q.c.id == ident)).rowcount == 0:
                raise self._unknown(ident)

    def expire(self, now: datetime | None = None) -> int:
        """Delete every message quarantined more than the retention before ``now`` (the
        clock's time); how many were deleted."""
        cutoff = naive_utc((now or self._now()) - self.retention)
        with write_transaction(self.engine) as conn:
            return int(conn.execute(q.delete().where(q.c.at < cutoff)).rowcount or 0)

    @staticmethod
    def _unknown(ident: str) -> QuarantineNotFound:
        shown = ident if ident.isprintable() and len(ident) <= 64 else ascii(ident[:64])
        return QuarantineNotFound(
            f"no quarantined message {shown} (expired, deleted, or mistyped; see"
            " `feedgate quarantine list`)"
        )

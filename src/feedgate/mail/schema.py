"""The mail policy's tables in the manager's database (schema ``feeds``, revision ``feeds_0004``).

They live beside the feeds' tables so that every node of a cluster shares one policy and one
match log; :func:`feedgate.migrate.target_metadata` collects them with the feeds' tables. Times
are stored as naive UTC, as in :mod:`feedgate.feeds.store`.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

__all__ = [
    "POLICY_COUNTER",
    "RETRO_COUNTER",
    "exceptions_table",
    "index_keys",
    "index_messages",
    "match_log",
    "metadata",
    "quarantine_table",
    "retro_table",
    "rules_table",
]

metadata = sa.MetaData()

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: a rowid alias

#: The row of ``feed_counters`` bumped by every change of rules or exceptions: a gateway reads
#: it to know when to reload its policy, without reading the rules.
POLICY_COUNTER: Final = "policy_version"

rules_table = sa.Table(
    "mail_rules",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),  # 1, 2, ...: the order rules are listed
    sa.Column("parts", sa.Text, nullable=False),  # JSON list of model.Part; [] = every part
    sa.Column("sources", sa.Text, nullable=False),  # JSON list of source names; [] = any
    sa.Column("kinds", sa.Text, nullable=False),  # JSON list of observable kinds; [] = any
    sa.Column("action", sa.String(16), nullable=False),  # model.Action, never deliver
    sa.Column("subject_prefix", sa.Text, nullable=True),  # tag rules only
)

exceptions_table = sa.Table(
    "mail_exceptions",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    # sha256(kind NUL value) (feedgate.observables.observable_digest): a URL may be long
    sa.Column("digest", sa.LargeBinary(32), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)

match_log = sa.Table(
    "mail_match_log",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("message_id", sa.Text, nullable=True),
    sa.Column("parts", sa.String(200), nullable=False),  # comma-separated model.Part values
    sa.Column("rule", sa.String(64), nullable=True),  # the rule that decided; NULL: none did
    # What was done to the message; mode monitor: what the rule would have done (rows from before
    # feeds_0009 say "monitor"); the retro-scan's rows: "retro" or "retro-monitor".
    sa.Column("action", sa.String(16), nullable=False),
    # The observable as it was: the log outlives observables and sources (no foreign keys).
    sa.Column("observable_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    # "enforce", or "monitor": the source was in monitor mode, nothing was done for this match
    # (feeds.sources.MODES; feeds_0009)
    sa.Column("mode", sa.String(16), nullable=False, server_default="enforce"),
    sa.Index("ix_mail_match_log_at", "at"),
    sa.Index("ix_mail_match_log_source_at", "source", "at"),
)

#: Messages a quarantine rule kept (revision feeds_0006): in the manager's database so that any
#: node of a cluster can list and release them (mail.quarantine.QuarantineStore).
quarantine_table = sa.Table(
    "mail_quarantine",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # random hex: not guessable, not a count
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),  # JSON of model.Envelope.to_dict
    sa.Column("message_id", sa.Text, nullable=True),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("rules", sa.Text, nullable=False),  # JSON list of rule names
    sa.Column("matches", sa.Text, nullable=False),  # JSON list of Match.to_dict
    sa.Column("sources", sa.Text, nullable=False),  # ",a,b,": the sources matched, for --source
    sa.Column("relay", sa.String(300), nullable=True),  # HOST:PORT it would have gone to
    # The TLS it would have gone with (feeds_0009): the gateway's --relay-tls level and
    # --relay-ca-file; NULL (the milter's, and messages held before) is ``may``.
    sa.Column("relay_tls", sa.String(16), nullable=True),
    sa.Column("relay_ca_file", sa.Text, nullable=True),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("released_at", sa.DateTime, nullable=True),
    sa.Column("released_by", sa.String(200), nullable=True),
    sa.Column("release_error", sa.Text, nullable=True),  # the last refused release, and when
    sa.Column("release_error_at", sa.DateTime, nullable=True),
    # A release in progress (feeds_0008): the releaser's random token, who and where, since
    # when, and until when the claim holds (a releaser that died leaves it to lapse).
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("claimed_by", sa.String(300), nullable=True),
    sa.Column("claimed_at", sa.DateTime, nullable=True),
    sa.Column("claim_until", sa.DateTime, nullable=True),
    sa.Index("ix_mail_quarantine_at", "at"),
)

# --- the mail index and the retro-scan (feeds_0007) --------------------------------------------

#: The row of ``feed_counters`` holding the store version the retro-scan has matched up to
#: (:class:`feedgate.mail.retro.RetroScanner`): a restart neither rescans nor misses a poll.
RETRO_COUNTER: Final = "retro_version"

#: One row per message that passed (deliver, log, tag, header), kept for the retention
#: (:mod:`feedgate.mail.mailindex`): who and what it was, never its body.
index_messages = sa.Table(
    "mail_index_messages",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),  # when it was scanned
    sa.Column("name", sa.Text, nullable=True),  # the scan's name for it: queue id or path
    sa.Column("message_id", sa.Text, nullable=True),  # its Message-ID header
    sa.Column("envelope_from", sa.Text, nullable=True),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("client_ip", sa.String(45), nullable=True),
    sa.Column("action", sa.String(16), nullable=False),  # what was done: deliver, log, tag, header
    # The matcher snapshot's store version the verdict was made at: observables changed after
    # it were not looked for in this message.
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Index("ix_mail_index_messages_at", "at"),
)

#: What a passed message can match: one row per probe of each offer, keyed by the first 8
#: bytes of sha256(kind NUL value) as a signed 64-bit integer (the store's digest, so a new
#: observable's key finds the messages holding it by one index lookup): a host under every
#: parent domain, an IP address also as 16 bytes (IPv4 mapped, ``::ffff:a.b.c.d``) for the
#: range queries of new networks.
index_keys = sa.Table(
    "mail_index_keys",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "message",
        _BigId,
        sa.ForeignKey("mail_index_messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("part", sa.String(16), nullable=False),  # model.Part
    sa.Column("lookup", sa.String(8), nullable=False),  # model.Lookup
    sa.Column("value", sa.Text, nullable=False),  # the offer's normalised value
    sa.Column("key", sa.BigInteger, nullable=False),
    sa.Column("address", sa.LargeBinary(16), nullable=True),  # ip lookups only
    sa.Index("ix_mail_index_keys_key", "key"),
    sa.Index("ix_mail_index_keys_address", "address"),
    sa.Index("ix_mail_index_keys_message", "message"),
)

#: Each passed message an observable added later would have caught: what ``feedgate retro``
#: and ``GET /api/v1/retro`` list. The message's fields are copied (the index expires, the
#: findings stay); one row per (indexed message, observable), reported once.
retro_table = sa.Table(
    "mail_retro",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),  # when the retro-scan found it
    sa.Column("indexed", sa.BigInteger, nullable=False),  # mail_index_messages.id
    sa.Column("scanned_at", sa.DateTime, nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("message_id", sa.Text, nullable=True),
    sa.Column("envelope_from", sa.Text, nullable=True),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("client_ip", sa.String(45), nullable=True),
    sa.Column("passed", sa.String(16), nullable=False),  # what was done to it then
    sa.Column("action", sa.String(16), nullable=False),  # what the rules would do now
    sa.Column("rule", sa.String(64), nullable=True),  # the rule that would decide
    sa.Column("mode", sa.String(16), nullable=False),  # the source's: enforce or monitor
    sa.Column("part", sa.String(16), nullable=False),
    sa.Column("observable_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.UniqueConstraint("indexed", "observable_id", name="uq_mail_retro_found"),
    sa.Index("ix_mail_retro_at", "at"),
)

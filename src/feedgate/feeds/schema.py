"""The feeds schema's tables: what the head revision of its migrations makes.

The store (:mod:`feedgate.feeds.store`) and the scheduler (:mod:`feedgate.feeds.scheduler`)
read and write these; :mod:`feedgate.migrate` compares them with a database. They live here, in
a module that imports nothing else of feedgate, so that migrate needs neither the store nor the
scheduler (nor they migrate's view of them): no import circle. A change here goes with a new
revision under ``migrations/feeds/versions`` (tests/test_migrations.py compares the two).
Timestamps are naive UTC; durations are integer microseconds.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "console_login_failures",
    "console_sessions",
    "console_users",
    "counters",
    "held_counts",
    "leases",
    "log_table",
    "metadata",
    "observables_table",
    "shared_contexts",
    "sources",
    "status_table",
]

metadata = sa.MetaData()

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: a rowid alias

sources = sa.Table(
    "feed_sources",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("use_https", sa.Boolean, nullable=False),
    sa.Column("poll_path", sa.Text, nullable=False),
    sa.Column("discovery_path", sa.Text, nullable=True),
    sa.Column("collection", sa.Text, nullable=False),
    sa.Column("taxii_version", sa.String(8), nullable=False),
    sa.Column("username", sa.Text, nullable=True),  # only when not username_secret
    sa.Column("username_enc", sa.Text, nullable=True),  # when username_secret: encrypted
    sa.Column("username_secret", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("password_enc", sa.Text, nullable=True),  # feedgate.feeds.secrets.encrypt
    sa.Column("cert_file", sa.Text, nullable=True),
    sa.Column("key_file", sa.Text, nullable=True),
    sa.Column("key_password_enc", sa.Text, nullable=True),  # idem
    sa.Column("ca_cert", sa.Text, nullable=True),
    sa.Column("verify_ssl", sa.Boolean, nullable=False),
    sa.Column("proxy_url", sa.Text, nullable=True),
    sa.Column("polling_interval_us", sa.BigInteger, nullable=False),
    sa.Column("age_us", sa.BigInteger, nullable=False),
    sa.Column("poll_segment_us", sa.BigInteger, nullable=False),
    sa.Column("max_retries", sa.Integer, nullable=False),
    sa.Column("timeout_us", sa.BigInteger, nullable=False, server_default="60000000"),
    sa.Column("enforce", sa.Text, nullable=False),  # JSON list, sorted
    sa.Column("fp_gate", sa.Boolean, nullable=False, server_default=sa.true()),  # feeds_0004
    # "enforce" or "monitor" (feeds.sources.MODES; feeds_0007)
    sa.Column("mode", sa.String(16), nullable=False, server_default="enforce"),
)

status_table = sa.Table(
    "feed_status",
    metadata,
    sa.Column(
        "source_id",
        _BigId,
        sa.ForeignKey("feed_sources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("last_start", sa.DateTime, nullable=True),
    sa.Column("last_end", sa.DateTime, nullable=True),
    sa.Column("result", sa.String(16), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("blocks", sa.BigInteger, nullable=True),
    sa.Column("read", sa.BigInteger, nullable=True),
    sa.Column("new", sa.BigInteger, nullable=True),
    sa.Column("updated", sa.BigInteger, nullable=True),
    sa.Column("expired", sa.BigInteger, nullable=True),
    sa.Column("watermark", sa.DateTime, nullable=True),
)

observables_table = sa.Table(
    "observables",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "source_id",
        _BigId,
        sa.ForeignKey("feed_sources.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("digest", sa.LargeBinary(32), nullable=False),  # sha256(kind NUL value)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("original_type", sa.Text, nullable=True),
    sa.Column("first_seen", sa.DateTime, nullable=False),
    sa.Column("last_seen", sa.DateTime, nullable=False),
    sa.Column("valid_until", sa.DateTime, nullable=True),
    sa.Column("expired", sa.Boolean, nullable=False),
    sa.Column("context", sa.Text, nullable=False),  # JSON object: the indicator's own keys
    # The layer of context shared with the package's other indicators (shared_contexts), or
    # NULL: the whole context is then in ``context`` (rows written before feeds_0002, STIX 2).
    sa.Column("shared_digest", sa.LargeBinary(32), nullable=True),
    # The store's version (FeedStore.version) whose commit last made the row live or expired
    # (feeds_0005): what a matcher reads to learn what changed since the version it holds.
    sa.Column("changed_version", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("source_id", "digest", name="uq_observables_key"),
    sa.Index("ix_observables_live", "expired", "kind"),
    sa.Index("ix_observables_source_seen", "source_id", "last_seen"),
    sa.Index("ix_observables_changed", "changed_version"),
)

#: Context layers shared by many observables (a pulse's id, title, description, TLP), stored
#: once per source and package instead of in every row; keyed by SHA-256 of their JSON.
shared_contexts = sa.Table(
    "shared_contexts",
    metadata,
    sa.Column(
        "source_id",
        _BigId,
        sa.ForeignKey("feed_sources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("digest", sa.LargeBinary(32), primary_key=True),
    sa.Column("context", sa.Text, nullable=False),  # JSON object
)

log_table = sa.Table(
    "feed_log",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("source", sa.String(64), nullable=True),  # a name: log rows outlive their source
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_feed_log_source", "source", "id"),
)

counters = sa.Table(
    "feed_counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

#: The scheduler's: who is polling which source, until when (microseconds since the epoch, UTC);
#: node ``feedgate.feeds.scheduler.FREE`` marks a released lease on PostgreSQL.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("expires", sa.BigInteger, nullable=False),
)

#: How many live observables each source held, per kind, at the end of a poll (feeds_0012):
#: the history the Reports page charts, which the observables table cannot give (an expired
#: row keeps no time of expiry). One snapshot per source and UTC day, the day's last: a poll
#: replaces that day's earlier one; rows older than :data:`feedgate.feeds.store.HELD_KEEP`
#: are deleted as new ones are written (:meth:`feedgate.feeds.store.FeedStore.record_held`).
held_counts = sa.Table(
    "feed_held_counts",
    metadata,
    sa.Column(
        "source_id",
        _BigId,
        sa.ForeignKey("feed_sources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("at", sa.DateTime, primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("held", sa.BigInteger, nullable=False),
    sa.Index("ix_feed_held_counts_at", "at"),
)

# --- the web console's users (feeds.console_users; feeds_0011) --------------------------------

#: Who may log in to the console: a name and an argon2id hash (a PHC string), never a password.
console_users = sa.Table(
    "console_users",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("password_changed", sa.DateTime, nullable=False),
    sa.Column("last_login", sa.DateTime, nullable=True),
)

#: Server-side sessions: the SHA-256 of the cookie's random token (the token itself is only in
#: the browser), whose it is, when it began and when it was last used (idle expiry).
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_digest", sa.LargeBinary(32), primary_key=True),
    sa.Column(
        "user_id",
        _BigId,
        sa.ForeignKey("console_users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("last_seen", sa.DateTime, nullable=False),
    sa.Column("address", sa.String(64), nullable=True),  # where it logged in from
    sa.Index("ix_console_sessions_user", "user_id"),
)

#: Login attempts not (yet) known to have succeeded, per client address (an IPv6 client by its
#: /64): what throttling counts. Rows older than the window are deleted as new ones come.
console_login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Index("ix_console_login_failures_address", "address", "at"),
)

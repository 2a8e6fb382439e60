"""The hub schema's tables: what the head revision of its migrations makes.

:mod:`feedgate.hub.store` reads and writes these; :mod:`feedgate.migrate` compares them with a
database. They live here, in a module that imports nothing else of feedgate, so that migrate
needs no store (and the hub's store and the feeds' never meet, not even through migrate). A
change here goes with a new revision under ``migrations/hub/versions``.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "api_keys",
    "counters",
    "indicators",
    "metadata",
    "packages",
    "pulses",
    "settings",
    "subscriptions",
    "users",
]

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(150), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("created", sa.DateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),  # SHA-256 hex of the key
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Index("ix_api_keys_user", "user_id"),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("author", sa.String(150), primary_key=True),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=True),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

pulses = sa.Table(
    "pulses",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
    sa.Column("label", sa.BigInteger, nullable=False, unique=True),  # µs since the epoch
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("author_name", sa.String(150), nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("modified", sa.DateTime, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("tlp", sa.String(8), nullable=False),
    sa.Column("public", sa.Boolean, nullable=False),
    sa.Column("adversary", sa.Text, nullable=False),
    sa.Column("targeted_countries", sa.JSON, nullable=False),
    sa.Column("malware_families", sa.JSON, nullable=False),
    sa.Column("attack_ids", sa.JSON, nullable=False),
    sa.Column("industries", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("references", sa.JSON, nullable=False),
    sa.Column("extract_source", sa.JSON, nullable=False),
    sa.Column("more_indicators", sa.Boolean, nullable=False),
    # TAXII poll: one author's pulses in label order (keyset pagination).
    sa.Index("ix_pulses_author_label", "author_name", "label"),
    # REST: subscribed pulses by modified time.
    sa.Index("ix_pulses_author_modified", "author_name", "modified"),
)

#: The STIX package each pulse is served as, rendered once per revision (the TAXII poll sends
#: these bytes as they are). ``valid_until``: when an indicator in it expires and the package
#: must be rendered again (NULL: never).
packages = sa.Table(
    "packages",
    metadata,
    sa.Column(
        "pulse_id", sa.String(24), sa.ForeignKey("pulses.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("valid_until", sa.BigInteger, nullable=True),
    sa.Column("xml", sa.LargeBinary, nullable=False),
)

indicators = sa.Table(
    "indicators",
    metadata,
    sa.Column(
        "pulse_id",
        sa.String(24),
        sa.ForeignKey("pulses.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("indicator", sa.Text, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("expiration", sa.DateTime, nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("role", sa.String(64), nullable=True),
    sa.Index("ix_indicators_value", "type", "indicator"),
)

"""The mail index, the retro-scan's findings, and each source's mode.

- ``mail_index_messages`` / ``mail_index_keys``: what every message that passed can match (no
  body), for the retention (14 days by default), keyed by the store's digest so that a new
  observable finds the messages that carry it by one index lookup;
- ``mail_retro``: each passed message that a later poll's observable would have caught;
- (``feed_counters.retro_version``, the store version the retro-scan has matched up to, is
  written by the scan itself: from the oldest indexed message's version on its first run);
- ``feed_sources.mode``: ``enforce`` (every existing source) or ``monitor``.

The tables are :mod:`feedgate.mail.schema`'s.

Revision ID: feeds_0007
Revises: feeds_0006
Create Date: 2026-12-20 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0007"
down_revision: str | None = "feeds_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "feed_sources",
        sa.Column("mode", sa.String(length=16), nullable=False, server_default="enforce"),
    )
    op.create_table(
        "mail_index_messages",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("envelope_from", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("client_ip", sa.String(length=45), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mail_index_messages_at", "mail_index_messages", ["at"])
    op.create_table(
        "mail_index_keys",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("message", _BigId, nullable=False),
        sa.Column("part", sa.String(length=16), nullable=False),
        sa.Column("lookup", sa.String(length=8), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("key", sa.BigInteger(), nullable=False),
        sa.Column("address", sa.LargeBinary(length=16), nullable=True),
        sa.ForeignKeyConstraint(["message"], ["mail_index_messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mail_index_keys_key", "mail_index_keys", ["key"])
    op.create_index("ix_mail_index_keys_address", "mail_index_keys", ["address"])
    op.create_index("ix_mail_index_keys_message", "mail_index_keys", ["message"])
    op.create_table(
        "mail_retro",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("indexed", sa.BigInteger(), nullable=False),
        sa.Column("scanned_at", sa.DateTime(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("envelope_from", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("client_ip", sa.String(length=45), nullable=True),
        sa.Column("passed", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("part", sa.String(length=16), nullable=False),
        sa.Column("observable_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("indexed", "observable_id", name="uq_mail_retro_found"),
    )
    op.create_index("ix_mail_retro_at", "mail_retro", ["at"])


def downgrade() -> None:
    op.execute("DELETE FROM feed_counters WHERE name = 'retro_version'")  # the scan's, if run
    op.drop_index("ix_mail_retro_at", table_name="mail_retro")
    op.drop_table("mail_retro")
    op.drop_index("ix_mail_index_keys_message", table_name="mail_index_keys")
    op.drop_index("ix_mail_index_keys_address", table_name="mail_index_keys")
    op.drop_index("ix_mail_index_keys_key", table_name="mail_index_keys")
    op.drop_table("mail_index_keys")
    op.drop_index("ix_mail_index_messages_at", table_name="mail_index_messages")
    op.drop_table("mail_index_messages")
    op.drop_column("feed_sources", "mode")

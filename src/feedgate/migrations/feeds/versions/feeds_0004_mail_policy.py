"""The mail policy: rules, exceptions, the match log, and each source's false-positive gate.

The tables are :mod:`feedgate.mail.schema`'s. A new database (and one upgraded to this revision)
gets one rule, ``threat-feeds``: any part, any source, any kind → quarantine, so a gateway set
up with a feed does something safe at once; it is an ordinary row the admin may edit or delete,
and nothing makes it again (only this revision writes it, once). The ``policy_version`` counter
row starts at 0, written here under the migration's lock like the others (feeds_0001).

``feed_sources.fp_gate`` is on for every existing source: what would block the world was never
meant to be enforced.

Revision ID: feeds_0004
Revises: feeds_0003
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0004"
down_revision: str | None = "feeds_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "feed_sources",
        sa.Column("fp_gate", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    rules = op.create_table(
        "mail_rules",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("parts", sa.Text(), nullable=False),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("kinds", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("subject_prefix", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "mail_exceptions",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_table(
        "mail_match_log",
        sa.Column("id", _BigId, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("parts", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("observable_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mail_match_log_at", "mail_match_log", ["at"], unique=False)
    op.create_index("ix_mail_match_log_source_at", "mail_match_log", ["source", "at"], unique=False)
    # The values as this revision knows them (frozen: not read from feedgate.mail.rules).
    op.bulk_insert(
        rules,
        [
            {
                "name": "threat-feeds",
                "enabled": True,
                "position": 1,
                "parts": "[]",
                "sources": "[]",
                "kinds": "[]",
                "action": "quarantine",
                "subject_prefix": None,
            }
        ],
    )
    counters = sa.table("feed_counters", sa.column("name", sa.String), sa.column("value"))
    op.bulk_insert(counters, [{"name": "policy_version", "value": 0}])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM feed_counters WHERE name = 'policy_version'"))
    op.drop_index("ix_mail_match_log_source_at", table_name="mail_match_log")
    op.drop_index("ix_mail_match_log_at", table_name="mail_match_log")
    op.drop_table("mail_match_log")
    op.drop_table("mail_exceptions")
    op.drop_table("mail_rules")
    op.drop_column("feed_sources", "fp_gate")

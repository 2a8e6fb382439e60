"""The initial schema: exactly what ``create_all`` made before migrations existed.

The feeds schema includes the scheduler's ``leases`` table (made by ``Scheduler`` then).

The counter rows are written here too, in the migration's transaction (under its lock), so that
processes opening a new PostgreSQL database at once never race to insert them (FeedStore's own
check-then-insert then finds them).

Revision ID: feeds_0001
Revises: (none)
Create Date: 2026-11-28 04:31:48.135954
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "feed_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_feed_log_source", "feed_log", ["source", "id"], unique=False)

    op.create_table(
        "feed_sources",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("use_https", sa.Boolean(), nullable=False),
        sa.Column("poll_path", sa.Text(), nullable=False),
        sa.Column("discovery_path", sa.Text(), nullable=True),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("taxii_version", sa.String(length=8), nullable=False),
        sa.Column("username", sa.Text(), nullable=True),
        sa.Column("password_enc", sa.Text(), nullable=True),
        sa.Column("cert_file", sa.Text(), nullable=True),
        sa.Column("key_file", sa.Text(), nullable=True),
        sa.Column("key_password_enc", sa.Text(), nullable=True),
        sa.Column("ca_cert", sa.Text(), nullable=True),
        sa.Column("verify_ssl", sa.Boolean(), nullable=False),
        sa.Column("proxy_url", sa.Text(), nullable=True),
        sa.Column("polling_interval_us", sa.BigInteger(), nullable=False),
        sa.Column("age_us", sa.BigInteger(), nullable=False),
        sa.Column("poll_segment_us", sa.BigInteger(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("enforce", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "leases",
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    op.create_table(
        "feed_status",
        sa.Column(
            "source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("last_start", sa.DateTime(), nullable=True),
        sa.Column("last_end", sa.DateTime(), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("blocks", sa.BigInteger(), nullable=True),
        sa.Column("read", sa.BigInteger(), nullable=True),
        sa.Column("new", sa.BigInteger(), nullable=True),
        sa.Column("updated", sa.BigInteger(), nullable=True),
        sa.Column("expired", sa.BigInteger(), nullable=True),
        sa.Column("watermark", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["source_id"], ["feed_sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("source_id"),
    )
    op.create_table(
        "observables",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("original_type", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("valid_until", sa.DateTime(), nullable=True),
        sa.Column("expired", sa.Boolean(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["feed_sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "digest", name="uq_observables_key"),
    )
    op.create_index("ix_observables_live", "observables", ["expired", "kind"], unique=False)
    op.create_index(
        "ix_observables_source_seen", "observables", ["source_id", "last_seen"], unique=False
    )
    counters = sa.table(
        "feed_counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger)
    )
    op.bulk_insert(
        counters, [{"name": "version", "value": 0}, {"name": "schema_version", "value": 1}]
    )


def downgrade() -> None:
    op.drop_index("ix_observables_source_seen", table_name="observables")
    op.drop_index("ix_observables_live", table_name="observables")

    op.drop_table("observables")
    op.drop_table("feed_status")
    op.drop_table("leases")
    op.drop_table("feed_sources")
    op.drop_index("ix_feed_log_source", table_name="feed_log")

    op.drop_table("feed_log")
    op.drop_table("feed_counters")

"""Shared context layers: a package's context is stored once, not in every observable's row.

A pulse's title, description and TLP were repeated in the context JSON of each of its
observables, and were most of the store. They now live in ``shared_contexts`` (one row per
source and distinct layer, keyed by SHA-256 of its JSON), and an observable's ``context`` holds
only its indicator's own keys, with ``shared_digest`` naming the layer under them. Rows written
before keep their whole context and a NULL ``shared_digest``; they read the same, so nothing is
rewritten.

Revision ID: feeds_0002
Revises: feeds_0001
Create Date: 2026-11-28 07:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0002"
down_revision: str | None = "feeds_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shared_contexts",
        sa.Column(
            "source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["feed_sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("source_id", "digest"),
    )
    op.add_column(
        "observables", sa.Column("shared_digest", sa.LargeBinary(length=32), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("observables", "shared_digest")
    op.drop_table("shared_contexts")

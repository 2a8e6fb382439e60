"""The observables each source held per kind over time: ``feed_held_counts``, written at the
end of every poll (:meth:`feedgate.feeds.store.FeedStore.record_held`) for the Reports page's
chart of them. A new table only: nothing existing changes; it starts empty (the store had no
history of these counts to fill it from).

Revision ID: feeds_0012
Revises: feeds_0011
Create Date: 2026-12-10 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0012"
down_revision: str | None = "feeds_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feed_held_counts",
        sa.Column("source_id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["source_id"], ["feed_sources.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("source_id", "at", "kind"),
    )
    op.create_index("ix_feed_held_counts_at", "feed_held_counts", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_feed_held_counts_at", table_name="feed_held_counts")
    op.drop_table("feed_held_counts")

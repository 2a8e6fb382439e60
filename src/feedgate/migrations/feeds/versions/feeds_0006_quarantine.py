"""The mail quarantine: ``mail_quarantine``, one row per message a quarantine rule kept.

The message's bytes, its envelope (JSON), what matched, the relay it would have gone to and,
once released, who released it and when (or the relay's last refusal). Kept in the manager's
database so any node of a cluster can release what another quarantined.

Revision ID: feeds_0006
Revises: feeds_0005
Create Date: 2026-12-11 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0006"
down_revision: str | None = "feeds_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_quarantine",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("matches", sa.Text(), nullable=False),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("relay", sa.String(length=300), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.Column("release_error", sa.Text(), nullable=True),
        sa.Column("release_error_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mail_quarantine_at", "mail_quarantine", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_mail_quarantine_at", table_name="mail_quarantine")
    op.drop_table("mail_quarantine")

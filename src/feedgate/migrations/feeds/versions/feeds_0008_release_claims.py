"""Release claims on quarantined messages: ``mail_quarantine.claim_token``, ``claimed_by``,
``claimed_at``, ``claim_until``.

A release first takes the message with one conditional UPDATE (no claim, or a lapsed one), so
two nodes or two admins releasing the same message at once send it once; the columns are empty
for every message already held (none is being released while the schema changes).

Revision ID: feeds_0008
Revises: feeds_0007
Create Date: 2026-12-08 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0008"
down_revision: str | None = "feeds_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("claim_token", "claimed_by", "claimed_at", "claim_until")


def upgrade() -> None:
    op.add_column("mail_quarantine", sa.Column("claim_token", sa.String(length=32)))
    op.add_column("mail_quarantine", sa.Column("claimed_by", sa.String(length=300)))
    op.add_column("mail_quarantine", sa.Column("claimed_at", sa.DateTime()))
    op.add_column("mail_quarantine", sa.Column("claim_until", sa.DateTime()))


def downgrade() -> None:
    for column in reversed(_COLUMNS):
        op.drop_column("mail_quarantine", column)

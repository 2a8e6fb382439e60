"""What changed since a version: ``observables.changed_version``.

A matcher (feedgate.mail.matcher) holds the enforced observables in memory and must follow the
store as polls add rows and expiries remove them, without reading ten million rows again after
a poll that added a thousand. Each row now carries the store's version (``feed_counters``
``version``) of the commit that last made it live (new, or seen again after it expired) or
expired, indexed, so "what changed since version V" is one range scan. A row merely seen again
keeps its number: a re-poll of a feed that did not change changes nothing a matcher reads.
Existing rows get 0 (a matcher builds from all live rows first and follows from there).

Revision ID: feeds_0005
Revises: feeds_0004
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0005"
down_revision: str | None = "feeds_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "observables",
        sa.Column("changed_version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_observables_changed", "observables", ["changed_version"])


def downgrade() -> None:
    op.drop_index("ix_observables_changed", table_name="observables")
    op.drop_column("observables", "changed_version")

"""The match log tells monitored hits from enforced ones: ``mail_match_log.mode``.

``enforce`` for a match that counted, ``monitor`` for one of a source in monitor mode (nothing
was done for it; from now on its ``action`` is what its rule would have done). Rows written
before are told apart by their action: ``monitor`` (a live scan) and ``retro-monitor`` (the
retro-scan) were monitor mode's, every other enforced; their action is left as it was (which
rule would have decided is recorded, what that rule then did is not). The way back writes
``monitor`` into the action of every monitored row again, the old code's only sign of one.

Revision ID: feeds_0010
Revises: feeds_0009
Create Date: 2026-12-08 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0010"
down_revision: str | None = "feeds_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MONITOR_ACTIONS = ("monitor", "retro-monitor")


def upgrade() -> None:
    op.add_column(
        "mail_match_log",
        sa.Column("mode", sa.String(length=16), nullable=False, server_default="enforce"),
    )
    log = sa.table("mail_match_log", sa.column("action", sa.String), sa.column("mode", sa.String))
    op.execute(log.update().where(log.c.action.in_(_MONITOR_ACTIONS)).values(mode="monitor"))


def downgrade() -> None:
    # Before this revision a monitored row was known by its action alone: say "monitor" again.
    log = sa.table("mail_match_log", sa.column("action", sa.String), sa.column("mode", sa.String))
    op.execute(
        log.update()
        .where(log.c.mode == "monitor", log.c.action.not_in(_MONITOR_ACTIONS))
        .values(action="monitor")
    )
    op.drop_column("mail_match_log", "mode")

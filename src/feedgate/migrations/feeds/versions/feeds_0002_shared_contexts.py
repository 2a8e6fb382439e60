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

import json
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
    """Put each row's whole context back in the row before the layers go (nothing is lost)."""
    conn = op.get_bind()
    rows = sa.table(
        "observables",
        sa.column("id", sa.BigInteger()),
        sa.column("source_id", sa.BigInteger()),
        sa.column("context", sa.Text()),
        sa.column("shared_digest", sa.LargeBinary()),
    )
    layers = sa.table(
        "shared_contexts",
        sa.column("source_id", sa.BigInteger()),
        sa.column("digest", sa.LargeBinary()),
        sa.column("context", sa.Text()),
    )
    layered = (
        sa.select(rows.c.id, rows.c.context, layers.c.context)
        .join(
            layers,
            sa.and_(
                layers.c.source_id == rows.c.source_id, layers.c.digest == rows.c.shared_digest
            ),
        )
        .order_by(rows.c.id)
        .limit(_BATCH)
    )
    merge = (
        rows.update()
        .where(rows.c.id == sa.bindparam("row_id"))
        .values(context=sa.bindparam("whole"))
    )
    after = 0
    while found := conn.execute(layered.where(rows.c.id > after)).all():
        conn.execute(
            merge,
            [{"row_id": row_id, "whole": _merged(shared, own)} for row_id, own, shared in found],
        )
        after = found[-1][0]
    op.drop_column("observables", "shared_digest")
    op.drop_table("shared_contexts")


_BATCH = 5000


def _merged(shared: str, own: str) -> str:
    """The whole context as the code before feeds_0002 stored it: the layer, own keys over it."""
    whole = {**json.loads(shared), **json.loads(own)}
    text = json.dumps(whole, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped, as feedgate.observables does
        text = json.dumps(whole, separators=(",", ":"))
    return text

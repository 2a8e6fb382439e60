"""The initial schema: exactly what ``create_all`` made before migrations existed.

The counter rows and the ``schema_version`` setting are written here too, in the migration's
transaction (under its lock), so that processes opening a new PostgreSQL database at once never
race to insert them (HubStore's own check-then-insert then finds them).

Revision ID: hub_0001
Revises: (none)
Create Date: 2026-11-28 04:31:48.186550
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "pulses",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("author_name", sa.String(length=150), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("tlp", sa.String(length=8), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("adversary", sa.Text(), nullable=False),
        sa.Column("targeted_countries", sa.JSON(), nullable=False),
        sa.Column("malware_families", sa.JSON(), nullable=False),
        sa.Column("attack_ids", sa.JSON(), nullable=False),
        sa.Column("industries", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("extract_source", sa.JSON(), nullable=False),
        sa.Column("more_indicators", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("label"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index("ix_pulses_author_label", "pulses", ["author_name", "label"], unique=False)
    op.create_index(
        "ix_pulses_author_modified", "pulses", ["author_name", "modified"], unique=False
    )

    op.create_table(
        "settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=150), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "api_keys",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_api_keys_user", "api_keys", ["user_id"], unique=False)

    op.create_table(
        "indicators",
        sa.Column("pulse_id", sa.String(length=24), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("indicator", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("expiration", sa.DateTime(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("role", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["pulse_id"], ["pulses.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pulse_id", "id"),
    )
    op.create_index("ix_indicators_value", "indicators", ["type", "indicator"], unique=False)

    op.create_table(
        "packages",
        sa.Column("pulse_id", sa.String(length=24), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=True),
        sa.Column("xml", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["pulse_id"], ["pulses.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pulse_id"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=150), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "author"),
    )
    counters = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger))
    op.bulk_insert(counters, [{"name": n, "value": 0} for n in ("seq", "label", "indicator_id")])
    settings = sa.table("settings", sa.column("name", sa.String), sa.column("value", sa.Text))
    op.bulk_insert(settings, [{"name": "schema_version", "value": "1"}])


def downgrade() -> None:
    op.drop_table("subscriptions")
    op.drop_table("packages")
    op.drop_index("ix_indicators_value", table_name="indicators")

    op.drop_table("indicators")
    op.drop_index("ix_api_keys_user", table_name="api_keys")

    op.drop_table("api_keys")
    op.drop_table("users")
    op.drop_table("settings")
    op.drop_index("ix_pulses_author_modified", table_name="pulses")
    op.drop_index("ix_pulses_author_label", table_name="pulses")

    op.drop_table("pulses")
    op.drop_table("counters")

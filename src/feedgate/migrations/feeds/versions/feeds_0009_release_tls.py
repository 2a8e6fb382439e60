"""The relay TLS a quarantined message is released with: ``mail_quarantine.relay_tls`` and
``relay_ca_file``.

The gateway records its own ``--relay-tls`` level (and ``--relay-ca-file``) with each message it
quarantines, so a release goes out as the gateway would have sent the message: a gateway that
relays only over TLS (``encrypt``, ``verify``) does not see its quarantined mail released in
plain text. Both are empty for every message already held (and for the milter's, which has no
relay TLS): a release then uses ``may``, as it did before.

Revision ID: feeds_0009
Revises: feeds_0008
Create Date: 2026-12-08 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0009"
down_revision: str | None = "feeds_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("mail_quarantine", sa.Column("relay_tls", sa.String(length=16)))
    op.add_column("mail_quarantine", sa.Column("relay_ca_file", sa.Text()))


def downgrade() -> None:
    op.drop_column("mail_quarantine", "relay_ca_file")
    op.drop_column("mail_quarantine", "relay_tls")

"""Secret user names and per-request timeouts of feed sources.

OTX's TAXII user name *is* its API key, yet ``feed_sources.username`` held it in clear (only the
dummy password was encrypted). A source now says whether its user name is a secret
(``username_secret``); a secret one is stored encrypted in ``username_enc`` like the password,
and ``username`` is NULL. Existing rows are judged by the rule new sources follow
(:func:`feedgate.feeds.sources.secret_by_default`, and OTX always): their user names are
encrypted here, with the secret key the store uses, so none is lost and none stays in clear. A
password the current key cannot decrypt counts as a placeholder: the name is kept secret.

``timeout_us`` is the source's per-request timeout, 60 s for every existing source (what the
poller used before).

Revision ID: feeds_0003
Revises: feeds_0002
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feeds_0003"
down_revision: str | None = "feeds_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCES = sa.table(
    "feed_sources",
    sa.column("id", sa.BigInteger()),
    sa.column("hostname", sa.Text()),
    sa.column("username", sa.Text()),
    sa.column("username_enc", sa.Text()),
    sa.column("username_secret", sa.Boolean()),
    sa.column("password_enc", sa.Text()),
)


def upgrade() -> None:
    op.add_column("feed_sources", sa.Column("username_enc", sa.Text(), nullable=True))
    op.add_column(
        "feed_sources",
        sa.Column("username_secret", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "feed_sources",
        sa.Column("timeout_us", sa.BigInteger(), nullable=False, server_default="60000000"),
    )
    from feedgate.feeds import secrets
    from feedgate.feeds.sources import is_otx, secret_by_default

    conn = op.get_bind()
    found = conn.execute(
        sa.select(_SOURCES.c.id, _SOURCES.c.hostname, _SOURCES.c.username, _SOURCES.c.password_enc)
    ).all()
    for row_id, hostname, username, password_enc in found:
        try:
            password = None if password_enc is None else secrets.decrypt(password_enc)
        except secrets.SecretError:
            password = None  # cannot tell: the safe side
        secret = is_otx(hostname) or secret_by_default(username, password)
        values: dict[str, object] = {"username_secret": secret}
        if secret and username is not None:
            try:
                values.update(username=None, username_enc=secrets.encrypt(username))
            except secrets.SecretError as exc:
                from feedgate.migrate import MigrationError

                raise MigrationError(
                    f"cannot encrypt the sources' stored user names (API keys) in revision"
                    f" feeds_0003: {exc}; nothing was changed"
                ) from None
        conn.execute(_SOURCES.update().where(_SOURCES.c.id == row_id).values(**values))


def downgrade() -> None:
    """The user names back in clear (the code before feeds_0003 reads them only there)."""
    from feedgate.feeds import secrets

    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_SOURCES.c.id, _SOURCES.c.username_enc).where(
            _SOURCES.c.username_enc.is_not(None)
        )
    ).all()
    for row_id, token in rows:
        try:
            username = secrets.decrypt(token)
        except secrets.SecretError as exc:
            from feedgate.migrate import MigrationError

            raise MigrationError(
                f"cannot decrypt a stored user name to downgrade below feeds_0003: {exc}"
            ) from None
        conn.execute(_SOURCES.update().where(_SOURCES.c.id == row_id).values(username=username))
    for column in ("timeout_us", "username_secret", "username_enc"):
        op.drop_column("feed_sources", column)

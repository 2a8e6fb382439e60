"""Alembic's entry point for this script directory. The work is in
:func:`feedgate.migrate.run_env`: both schemas run alike, and the config says which."""

from alembic import context

from feedgate.migrate import run_env

run_env(context)

"""Alembic script directory of the feeds schema (see :mod:`feedgate.migrate`)."""

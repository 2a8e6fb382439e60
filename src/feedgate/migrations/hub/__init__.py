"""Alembic script directory of the hub schema (see :mod:`feedgate.migrate`)."""

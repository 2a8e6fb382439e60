"""Alembic script directories, one per schema: ``feeds`` (the manager's database) and ``hub``.

Run through :mod:`feedgate.migrate`, never from an ``alembic.ini``. To add a revision, change the
tables in the code, then (from a Python shell, on a database at the current head)::

    from alembic import command
    from feedgate.db import engine
    from feedgate.migrate import config

    with engine("/tmp/dev.db").begin() as conn:
        command.revision(config("feeds", conn), "what changes", autogenerate=True,
                         rev_id="feeds_0003")

and read the generated file before committing: autogenerate misses renames and data moves. Then
set :data:`feedgate.migrate.HEADS` to the new revision (opens at head skip Alembic; a test says
when it is stale).
"""

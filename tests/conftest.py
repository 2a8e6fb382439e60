"""Shared pytest set-up: the peers plugin (cabby, OpenTAXII) lives in tests/peers.py, the
PostgreSQL server (``pg_server``, ``pg_url``) in tests/pgserver.py, the throw-away Postfix
instances (``sink``, ``postfix_factory``) in tests/postfix.py."""

pytest_plugins = ["peers", "pgserver", "postfix"]

"""Shared pytest set-up: the peers plugin (cabby, OpenTAXII) lives in tests/peers.py."""

pytest_plugins = ["peers"]

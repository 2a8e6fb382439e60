"""Revisions of the hub schema (a package only so that they ship with feedgate)."""

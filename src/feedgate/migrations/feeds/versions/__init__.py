"""Revisions of the feeds schema (a package only so that they ship with feedgate)."""

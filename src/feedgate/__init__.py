"""feedgate: External Threat Feeds for email.

Subpackages follow the layering in design.md: ``stix`` and ``taxii`` are pure protocol code,
``hub``, ``feeds`` and ``mail`` build on them, ``cli`` and ``web`` are thin.
"""

__version__ = "0.1.0"

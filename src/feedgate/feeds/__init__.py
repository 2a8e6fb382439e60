"""The feed manager: sources (what to poll, with secrets encrypted at rest), the store, the poller.

``feeds`` never imports ``mail`` or ``web`` (design.md "Layout and layering").
"""

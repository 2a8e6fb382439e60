"""The web console: the External Threat Feed Manager in the browser, served by ``feedgate
serve`` and ``feedgate up`` at ``/`` on the REST API's port.

Server-rendered pages (Starlette + Jinja2, autoescaped), thin over the same stores and functions
as the REST API. :mod:`.app` assembles them (:func:`~.app.console_app`); :mod:`.auth` is the
login and the guard of every page, :mod:`.csrf` the forms' protection, :mod:`.render` the
templates, :mod:`.context` what a page module declares; one module per page group
(:mod:`.sources`, ...).
"""

from .app import console_app, console_routes
from .context import ConsoleContext

__all__ = ["ConsoleContext", "console_app", "console_routes"]

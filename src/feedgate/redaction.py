"""Credentials in URLs, masked before a URL is shown: the one rule every layer uses.

A URL may carry credentials in its userinfo (``scheme://user:password@host/``); whatever
shows a URL (log lines, error messages, the console) shows it through :func:`hide_url_credentials`.
It works on any text, so a message that merely contains URLs (an HTTP library's error, say) is
masked as well. This module imports nothing of feedgate, so every package may use it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MASK", "hide_url_credentials"]

MASK: Final = "***"

# scheme "://" then the authority up to its last "@" (a password may hold an unescaped "@");
# the authority ends at the first "/", "?", "#" or white space.
_USERINFO: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s]*)@")


def hide_url_credentials(text: str, *, keep_username: bool = False) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``.

    The password always goes. The user name goes too unless ``keep_username``: for TAXII it
    is often the secret itself (OTX takes the API key as the user name), while a database's
    user name is no secret and tells one database from another.

    >>> hide_url_credentials("POST http://KEY:PASS@h.test/taxii failed")
    'POST http://***:***@h.test/taxii failed'
    >>> hide_url_credentials("postgresql://u:pw@h/x", keep_username=True)
    'postgresql://u:***@h/x'
    """

    def mask(match: re.Match[str]) -> str:
        user, colon, _password = match.group(2).partition(":")
        shown_user = user if keep_username else MASK
        return f"{match.group(1)}{shown_user}{':' + MASK if colon else ''}@"

    return _USERINFO.sub(mask, text)

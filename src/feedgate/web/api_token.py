"""The REST API's bearer token: ``FEEDGATE_API_TOKEN``, or one made once and kept in a file.

Why a kept file: ``feedgate up`` and ``feedgate serve`` restart; a token that changed on every
start would break every client configured with it, and one printed on every start ends up in
logs and scrollback. So a generated token is written once, 0600, in the data directory (0700),
shown on the start that made it, and later starts say only where it is. A supplied token is the
admin's and is never printed. Either must be at least :data:`MIN_LENGTH` characters: a short
one can be guessed.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: The environment variable that supplies the token.
ENV: Final = "FEEDGATE_API_TOKEN"
#: The shortest token taken (a generated one is 43 characters, 256 bits).
MIN_LENGTH: Final = 32
#: The file name of a generated token in the data directory.
FILE_NAME: Final = "api-token"


class TokenError(ValueError):
    """A token that cannot be used (too short, a kept file others can read): one line."""


@dataclass(frozen=True)
class ApiToken:
    """The token, and how to tell the admin about it without printing it more than once."""

    value: str
    #: What follows ``API token:`` when the server is up.
    shown: str


def _check_length(value: str, where: str, fix: str) -> str:
    if len(value) < MIN_LENGTH:
        raise TokenError(
            f"{where} holds {len(value)} characters: a token needs at least {MIN_LENGTH} "
            f"(a guessable one opens the API to anyone); {fix}"
        )
    return value


def _read_kept(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise TokenError(
            f"{path} can be read by others (mode {mode:o}): chmod 600 {path}, "
            f"or delete it to have a new token made"
        )
    fix = f"delete {path} to have a new one made, or set {ENV}"
    return _check_length(path.read_text(encoding="utf-8").strip(), str(path), fix)


def _write_new(path: Path) -> str | None:
    """A new token written to ``path`` (0600, created only if absent); None if it exists."""
    value = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another start made it meanwhile: use theirs
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value + "\n")
    return value


def api_token(path: Path, environ: Mapping[str, str] = os.environ) -> ApiToken:
    """The API's token: ``FEEDGATE_API_TOKEN`` if set, else the one kept at ``path``, else a
    new one kept there. :class:`TokenError` for one too short or a kept file others can read;
    ``OSError`` when the file cannot be read or written."""
    header = "send Authorization: Bearer <token>"
    supplied = environ.get(ENV)
    if supplied:
        fix = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        value = _check_length(supplied.strip(), ENV, fix)
        return ApiToken(value, f"from {ENV}  ({header})")
    if not path.exists():
        made = _write_new(path)
        if made is not None:
            return ApiToken(
                made, f"{made}  (shown only this once; kept in {path}, mode 600; {header})"
            )
    return ApiToken(_read_kept(path), f"in {path}  (made on an earlier start; {header})")

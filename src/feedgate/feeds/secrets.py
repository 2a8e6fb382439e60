"""Secrets at rest (source passwords, key passwords): Fernet tokens from ``cryptography``.

The key comes from, in order:

1. ``FEEDGATE_SECRET_KEY``: a Fernet key (urlsafe base64 of 32 bytes, as :func:`generate_key`
   makes) or any other passphrase, from which a key is derived with scrypt. The salt is fixed (it
   has to be: nothing else is stored), so choose a long passphrase, or better a Fernet key.
2. the key file named by ``FEEDGATE_SECRET_KEY_FILE``, else ``<data dir>/secret.key``
   (``$XDG_DATA_HOME/feedgate/secret.key``). It is created with mode 0600 on first use; a key
   file that group or others can read is refused.

A token that does not decrypt (the key changed, or the token was damaged) raises
:class:`SecretError` saying so; neither the token nor the key is ever in a message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import os
import stat
from pathlib import Path
from typing import Final

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from feedgate.db import data_dir

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "SecretError",
    "decrypt",
    "default_key_file",
    "encrypt",
    "generate_key",
    "key_origin",
]

KEY_ENV: Final = "FEEDGATE_SECRET_KEY"
KEY_FILE_ENV: Final = "FEEDGATE_SECRET_KEY_FILE"
#: scrypt parameters for a passphrase (about 30-60 ms, 32 MiB once per process and passphrase).
_SCRYPT_N: Final = 2**15
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_SALT: Final = b"feedgate/feeds/secrets/v1"


class SecretError(Exception):
    """The secret key cannot be had, or a stored secret cannot be decrypted with it."""


def generate_key() -> str:
    """A new random Fernet key, as text (fit for ``FEEDGATE_SECRET_KEY`` or a key file)."""
    return Fernet.generate_key().decode("ascii")


def default_key_file() -> Path:
    """``FEEDGATE_SECRET_KEY_FILE``, else ``<data dir>/secret.key``."""
    named = os.environ.get(KEY_FILE_ENV)
    return Path(named).expanduser() if named else data_dir() / "secret.key"


def key_origin() -> str:
    """Where the key comes from, for messages: the variable's name or the file's path."""
    if os.environ.get(KEY_ENV):
        return f"${KEY_ENV}"
    return f"key file {default_key_file()}"


def _is_fernet_key(text: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(text.encode("ascii"))) == 32 and len(text) == 44
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False


@functools.lru_cache(maxsize=4)
def _fernet_from_text(text: str) -> Fernet:
    if _is_fernet_key(text):
        return Fernet(text.encode("ascii"))
    kdf = Scrypt(salt=_SALT, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    key = kdf.derive(text.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` (mode 0600) unless another process got there first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(generate_key() + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o600)
        with contextlib.suppress(FileExistsError):  # someone else's key wins: use theirs
            os.link(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _read_key_file(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        try:
            _create_key_file(path)
            info = path.stat()
        except OSError as exc:
            raise SecretError(
                f"cannot create the secret key file {path}: {exc.strerror or exc}; "
                f"set {KEY_FILE_ENV} to a writable place or {KEY_ENV} to a key"
            ) from None
    except OSError as exc:
        raise SecretError(
            f"cannot read the secret key file {path}: {exc.strerror or exc}"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"the secret key file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise SecretError(
            f"the secret key file {path} can be read by others (mode {mode:04o}): "
            f"run chmod 600 {path}, and consider the credentials it protects exposed"
        )
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise SecretError(f"cannot read the secret key file {path}: {reason}") from None
    if not _is_fernet_key(text):
        raise SecretError(
            f"the secret key file {path} does not hold a Fernet key: restore it, or move it "
            "away to start a new one (stored credentials must then be entered again)"
        )
    return text


def _fernet() -> Fernet:
    text = os.environ.get(KEY_ENV)
    if text:
        return _fernet_from_text(text)
    return _fernet_from_text(_read_key_file(default_key_file()))


def encrypt(text: str) -> str:
    """``text`` as a Fernet token (ASCII), with the current key."""
    return _fernet().encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """The text in ``token``; :class:`SecretError` if the current key cannot decrypt it."""
    fernet = _fernet()
    try:
        data = fernet.decrypt(token.encode("ascii") if isinstance(token, str) else token)
    except (InvalidToken, UnicodeEncodeError, TypeError, ValueError):
        raise SecretError(
            f"a stored credential cannot be decrypted with the secret key ({key_origin()}): "
            "the key changed since it was stored (or the value was damaged); restore the old "
            "key, or enter the credentials again"
        ) from None
    return data.decode("utf-8")

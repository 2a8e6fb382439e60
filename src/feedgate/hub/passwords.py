"""Secrets at rest: API keys as SHA-256 digests, passwords with scrypt and a per-user salt.

An API key is 32 random bytes (64 hex digits, like OTX's keys), so a plain SHA-256 digest is
enough to look it up without storing it: nobody can brute-force 256 random bits. Passwords are
chosen by people, so they get a slow, memory-hard KDF (``hashlib.scrypt``); the encoded form
``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` carries its parameters so they can be raised later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

#: scrypt cost: n=2**15, r=8, p=1 (~32 MiB, tens of milliseconds per check).
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32


def new_api_key() -> str:
    """A fresh API key: 64 lower-case hex digits."""
    return secrets.token_hex(32)


def api_key_digest(key: str) -> str:
    """The stored form of an API key: its SHA-256 in hex."""
    return hashlib.sha256(key.strip().encode("utf-8")).hexdigest()


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r + 4 * 1024**2,
        dklen=_HASH_BYTES,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """Encode ``password`` with scrypt and a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded`` (constant-time comparison); False for a
    malformed or unknown encoding."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)

"""Zip archives in attachments: each member hashed as it streams out, archives in archives too.

A zip is where malware hides from a hash of the attachment, so its members are hashed as
attachments of their own. It is also where zip bombs live, so nothing is believed: a member is
expanded only when its declared size and compression ratio are within limits, and then only in
chunks, counted as they come, with the expansion stopped at the limit whatever the header said.
Only a member that looks like an archive itself is kept in memory (to be opened in turn).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import Final

from feedgate.mail import limits
from feedgate.mail._collect import Collector

__all__ = ["is_zip", "scan_zip"]

_ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06")
_MAX_NAME: Final = 200


def is_zip(data: bytes) -> bool:
    """Whether ``data`` starts as a zip archive does (what it is called does not matter)."""
    return data[:4] in _ZIP_MAGIC


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 160 else text[:160] + "…"


def scan_zip(data: bytes, label: str, out: Collector, depth: int = 1) -> None:
    """Offer the hashes of the members of the zip archive ``data`` (called ``label``)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as exc:  # BadZipFile, OSError, ValueError, EOFError...: all are "unreadable"
        out.skip(label, f"zip archive could not be read: {_reason(exc)}")
        return
    with archive:
        members = archive.infolist()
        for index, info in enumerate(members):
            if index >= limits.MAX_ARCHIVE_MEMBERS:
                out.skip(
                    label,
                    f"zip archive has {len(members)} members; only the first "
                    f"{limits.MAX_ARCHIVE_MEMBERS} were looked at",
                )
                break
            if info.is_dir():
                continue
            name = info.filename if len(info.filename) <= _MAX_NAME else info.filename[:_MAX_NAME]
            _member(archive, info, f"{label}/{name}", out, depth)


def _member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, out: Collector, depth: int
) -> None:
    size, packed = info.file_size, info.compress_size
    if info.flag_bits & 0x1:
        out.skip(label, "encrypted zip member: not decrypted, not hashed")
        return
    if size > limits.MAX_MEMBER_BYTES:
        out.skip(
            label,
            f"zip member declares {size} bytes expanded (limit {limits.MAX_MEMBER_BYTES}): "
            "not expanded",
        )
        return
    if size > limits.BOMB_MIN_BYTES and size > limits.MAX_COMPRESSION_RATIO * max(packed, 1):
        out.skip(
            label,
            f"zip bomb: {packed} bytes declared to expand to {size} "
            f"(ratio over {limits.MAX_COMPRESSION_RATIO}): not expanded",
        )
        return
    if not out.spend(size, label):
        return
    md5 = hashlib.md5(usedforsecurity=False)
    sha1 = hashlib.sha1(usedforsecurity=False)
    sha256 = hashlib.sha256()
    nested = False
    kept: list[bytes] = []
    total = 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(limits.ARCHIVE_CHUNK_BYTES):
                if total == 0:
                    nested = is_zip(chunk)
                total += len(chunk)
                if total > size or total > limits.MAX_MEMBER_BYTES:
                    out.skip(label, "zip bomb: expands beyond its declared size; not hashed")
                    return
                md5.update(chunk)
                sha1.update(chunk)
                sha256.update(chunk)
                if nested and depth < limits.MAX_ARCHIVE_DEPTH:
                    kept.append(chunk)
    except zipfile.BadZipFile as exc:
        # zipfile stops at the declared size, so a member that expands further than it says
        # ends here, as a CRC mismatch (as does a damaged one).
        out.skip(
            label,
            f"zip member does not expand to what it declares ({_reason(exc)}): a zip bomb or "
            "damaged; not hashed",
        )
        return
    except Exception as exc:  # zlib/bz2/lzma errors, unsupported methods, truncated data
        out.skip(label, f"zip member could not be expanded: {_reason(exc)}")
        return
    out.add_digests(md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest(), label)
    if not nested:
        return
    if depth < limits.MAX_ARCHIVE_DEPTH:
        data = b"".join(kept)
        kept.clear()
        scan_zip(data, label, out, depth + 1)
    else:
        out.skip(
            label,
            f"archive nested deeper than {limits.MAX_ARCHIVE_DEPTH} levels: "
            "its members were not looked at",
        )

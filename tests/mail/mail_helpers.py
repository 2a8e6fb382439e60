"""Helpers for the inspector's tests: where the samples are, and reading an Inspection."""

from __future__ import annotations

import hashlib
from pathlib import Path

from feedgate.mail.model import Inspection, Lookup, Part

DATA = Path(__file__).resolve().parent.parent / "data" / "mail"
SAMPLES = sorted(DATA.glob("*.eml"))


def values(inspection: Inspection, part: Part, lookup: Lookup) -> list[str]:
    """The values offered for ``part`` and ``lookup``, in the order offered."""
    return [o.value for o in inspection.offers if o.part is part and o.lookup is lookup]


def urls(inspection: Inspection) -> list[str]:
    return values(inspection, Part.URL, Lookup.URL)


def hashes(data: bytes) -> dict[Lookup, str]:
    """The three digests of ``data``, computed here, independently of the inspector."""
    return {
        Lookup.MD5: hashlib.md5(data).hexdigest(),
        Lookup.SHA1: hashlib.sha1(data).hexdigest(),
        Lookup.SHA256: hashlib.sha256(data).hexdigest(),
    }


def has_hashes(inspection: Inspection, data: bytes) -> bool:
    """Whether all three digests of ``data`` are offered as attachment hashes."""
    return all(
        digest in values(inspection, Part.ATTACHMENT, lookup)
        for lookup, digest in hashes(data).items()
    )


def skipped_text(inspection: Inspection) -> str:
    """All skips as one text, for asserting that a limit was reported."""
    return "\n".join(f"{s.what}: {s.reason}" for s in inspection.skipped)

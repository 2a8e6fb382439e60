"""Zip archives in messages: members hashed, archives in archives, zip bombs refused."""

from __future__ import annotations

import io
import struct
import zipfile
from email.message import EmailMessage

from mail_helpers import has_hashes, hashes, skipped_text, values

from feedgate.mail import limits
from feedgate.mail.inspect import inspect_message
from feedgate.mail.model import Inspection, Lookup, Part


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _mail_with(data: bytes, filename: str = "files.zip") -> Inspection:
    message = EmailMessage()
    message["From"] = "a@b.example"
    message.set_content("see attached")
    message.add_attachment(data, maintype="application", subtype="zip", filename=filename)
    return inspect_message(message.as_bytes())


def _declare_size(archive: bytes, name: bytes, size: int) -> bytes:
    """The archive with ``name``'s uncompressed size changed in both of its headers."""
    data = bytearray(archive)
    local = data.find(b"PK\x03\x04")
    while local >= 0:
        name_length = struct.unpack_from("<H", data, local + 26)[0]
        if data[local + 30 : local + 30 + name_length] == name:
            struct.pack_into("<I", data, local + 22, size)
        local = data.find(b"PK\x03\x04", local + 4)
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        name_length = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_length] == name:
            struct.pack_into("<I", data, central + 24, size)
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(data)


def test_zip_members_are_hashed_and_the_archive_too() -> None:
    members = {"invoice.exe": b"MZ" + bytes(range(256)) * 10, "docs/readme.txt": b"read me\n"}
    archive = _zip(members)
    result = _mail_with(archive)
    assert has_hashes(result, archive)
    with zipfile.ZipFile(io.BytesIO(archive)) as check:  # read back independently
        for info in check.infolist():
            assert has_hashes(result, check.read(info))
    seen = {o.seen for o in result.offers if o.part is Part.ATTACHMENT}
    assert seen == {"files.zip", "files.zip/invoice.exe", "files.zip/docs/readme.txt"}
    assert result.skipped == ()


def test_zip_found_by_its_bytes_not_its_name() -> None:
    archive = _zip({"payload.js": b"alert(1)"}, method=zipfile.ZIP_STORED)
    result = _mail_with(archive, filename="photo.jpg")
    assert has_hashes(result, b"alert(1)")


def test_zip_in_zip_is_walked() -> None:
    inner = _zip({"deep/evil.dll": b"MZ deep payload"})
    outer = _zip({"inner.zip": inner, "note.txt": b"hi"})
    result = _mail_with(outer)
    for data in (outer, inner, b"MZ deep payload", b"hi"):
        assert has_hashes(result, data)
    assert any(o.seen == "files.zip/inner.zip/deep/evil.dll" for o in result.offers)


def test_archive_nesting_limit_is_reported() -> None:
    data = b"innermost"
    for _ in range(limits.MAX_ARCHIVE_DEPTH + 1):
        data = _zip({"next.zip" if data[:2] == b"PK" else "last.bin": data})
    result = _mail_with(data)
    assert f"archive nested deeper than {limits.MAX_ARCHIVE_DEPTH}" in skipped_text(result)
    assert not has_hashes(result, b"innermost")


def test_bomb_by_declared_size_is_skipped_never_expanded() -> None:
    archive = _declare_size(_zip({"big.bin": b"x" * 1000}), b"big.bin", 3 * 1024**3)
    result = _mail_with(archive)
    assert "files.zip/big.bin: zip member declares 3221225472 bytes" in skipped_text(result)
    assert not has_hashes(result, b"x" * 1000)
    assert has_hashes(result, archive)  # the attachment itself is still hashed


def test_bomb_by_ratio_is_skipped() -> None:
    zeros = bytes(limits.BOMB_MIN_BYTES * 4)
    result = _mail_with(_zip({"zeros.bin": zeros, "ok.txt": b"fine"}))
    assert "files.zip/zeros.bin: zip bomb" in skipped_text(result)
    assert not has_hashes(result, zeros)
    assert has_hashes(result, b"fine")


def test_bomb_that_expands_beyond_its_declared_size_is_skipped() -> None:
    real = bytes(200_000)  # declared as 1000 bytes: ratio and size checks pass
    archive = _declare_size(_zip({"liar.bin": real}), b"liar.bin", 1000)
    result = _mail_with(archive)
    text = skipped_text(result)
    assert "files.zip/liar.bin: zip member does not expand to what it declares" in text
    for digest in hashes(real[:1000]).values():
        assert digest not in {o.value for o in result.offers}
    assert not has_hashes(result, real)


def test_member_count_limit_is_reported() -> None:
    count = limits.MAX_ARCHIVE_MEMBERS + 5
    archive = _zip({f"f{i}.txt": str(i).encode() for i in range(count)}, zipfile.ZIP_STORED)
    result = _mail_with(archive)
    assert f"zip archive has {count} members; only the first" in skipped_text(result)
    assert has_hashes(result, b"0")
    assert not has_hashes(result, str(count - 1).encode())
    # each member once, three digests each, plus the archive's own three
    assert len(values(result, Part.ATTACHMENT, Lookup.SHA256)) == limits.MAX_ARCHIVE_MEMBERS + 1


def test_broken_zip_is_reported_and_hashed() -> None:
    broken = _zip({"a.txt": b"a" * 100})[:40]
    result = _mail_with(broken)
    assert has_hashes(result, broken)
    assert "files.zip: zip archive could not be read" in skipped_text(result)


def test_encrypted_member_is_reported() -> None:
    archive = bytearray(_zip({"secret.bin": b"s" * 50}, zipfile.ZIP_STORED))
    for header, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set the encrypted flag
        at = archive.find(header)
        struct.pack_into("<H", archive, at + flag_at, 1)
    result = _mail_with(bytes(archive))
    assert "files.zip/secret.bin: encrypted zip member" in skipped_text(result)

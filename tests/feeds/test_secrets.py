"""feeds.secrets: Fernet round trips, the 0600 key file, passphrases, errors that leak nothing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from feedgate.feeds import secrets
from feedgate.feeds.secrets import SecretError, decrypt, encrypt, generate_key


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "secret.key"
    monkeypatch.delenv("FEEDGATE_SECRET_KEY", raising=False)
    monkeypatch.setenv("FEEDGATE_SECRET_KEY_FILE", str(path))
    return path


def test_round_trip_creates_a_private_key_file(key_file: Path) -> None:
    assert not key_file.exists()
    token = encrypt("hunter2 — ünïcode")
    assert token.isascii() and "hunter2" not in token
    assert decrypt(token) == "hunter2 — ünïcode"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert encrypt("x") != encrypt("x")  # random IVs: equal secrets do not look equal
    assert decrypt(encrypt("")) == ""


def test_key_file_is_created_0600_whatever_the_umask(key_file: Path) -> None:
    old = os.umask(0)
    try:
        encrypt("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(key_file.parent.glob(".*tmp"))


def test_default_key_file_is_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEEDGATE_SECRET_KEY", raising=False)
    monkeypatch.delenv("FEEDGATE_SECRET_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert secrets.default_key_file() == tmp_path / "feedgate" / "secret.key"
    assert decrypt(encrypt("pw")) == "pw"
    assert (tmp_path / "feedgate" / "secret.key").exists()


def test_the_same_key_file_decrypts_in_another_process(key_file: Path) -> None:
    token = encrypt("across processes")
    code = "import sys; from feedgate.feeds.secrets import decrypt; print(decrypt(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", code, token], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "across processes"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_refused(key_file: Path, mode: int) -> None:
    encrypt("x")
    key_file.chmod(mode)
    with pytest.raises(SecretError) as info:
        encrypt("y")
    message = str(info.value)
    assert "can be read by others" in message and f"chmod 600 {key_file}" in message
    assert key_file.read_text().strip() not in message


def test_a_damaged_key_file_is_refused(key_file: Path) -> None:
    key_file.parent.mkdir(parents=True)
    key_file.write_text("not a key\n")
    key_file.chmod(0o600)
    with pytest.raises(SecretError, match="does not hold a Fernet key"):
        encrypt("x")


def test_wrong_key_is_a_clear_error_that_leaks_nothing(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = encrypt("hunter2")
    old_key = key_file.read_text().strip()
    key_file.unlink()  # a new key is made: the old token no longer opens
    with pytest.raises(SecretError) as info:
        decrypt(token)
    message = str(info.value)
    assert "key changed" in message and "enter the credentials again" in message
    for secret in (token, old_key, key_file.read_text().strip(), "hunter2"):
        assert secret not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__

    passphrase = "correct horse battery staple"
    monkeypatch.setenv("FEEDGATE_SECRET_KEY", passphrase)
    with pytest.raises(SecretError) as info:
        decrypt(token)
    assert passphrase not in str(info.value) and "$FEEDGATE_SECRET_KEY" in str(info.value)
    with pytest.raises(SecretError):
        decrypt("garbage")
    with pytest.raises(SecretError):
        decrypt("ünïcode")


def test_env_passphrase_and_env_fernet_key(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDGATE_SECRET_KEY", "a long passphrase, not a Fernet key")
    token = encrypt("pw")
    assert decrypt(token) == "pw"
    assert not key_file.exists()  # the environment's key wins: no file is made
    monkeypatch.setenv("FEEDGATE_SECRET_KEY", "another passphrase")
    with pytest.raises(SecretError):
        decrypt(token)
    monkeypatch.setenv("FEEDGATE_SECRET_KEY", "a long passphrase, not a Fernet key")
    assert decrypt(token) == "pw"  # derived the same way every time

    key = generate_key()
    monkeypatch.setenv("FEEDGATE_SECRET_KEY", key)
    token = encrypt("pw2")
    from cryptography.fernet import Fernet

    assert Fernet(key.encode()).decrypt(token.encode()) == b"pw2"  # used as the key itself


def test_key_origin(key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert secrets.key_origin() == f"key file {key_file}"
    monkeypatch.setenv("FEEDGATE_SECRET_KEY", "p")
    assert secrets.key_origin() == "$FEEDGATE_SECRET_KEY"

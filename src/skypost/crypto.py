"""Secrets at rest: Fernet with a key from SKYPOST_SECRET_KEY or a 0600 key file."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class SecretKeyError(RuntimeError):
    pass


def create_key_file(path: Path) -> bool:
    """Create a new key file readable by its owner alone; False if one exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    return True


def load_cipher(secret_key: str | None, key_file: Path) -> "Cipher":
    if secret_key:
        key = secret_key.strip().encode()
        source = "SKYPOST_SECRET_KEY"
    else:
        try:
            key = key_file.read_bytes().strip()
        except FileNotFoundError:
            raise SecretKeyError(
                f"no secret key: set SKYPOST_SECRET_KEY or run `skypost init` to create {key_file}"
            ) from None
        source = str(key_file)
    try:
        return Cipher(Fernet(key))
    except (ValueError, TypeError):
        raise SecretKeyError(f"the secret key in {source} is not a valid Fernet key") from None


class Cipher:
    def __init__(self, fernet: Fernet):
        self._fernet = fernet

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyError("a stored secret cannot be decrypted: was the secret key changed?") from None

    def __repr__(self) -> str:  # never show key material
        return "Cipher(<hidden>)"

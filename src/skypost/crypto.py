"""Secrets at rest: Fernet with a key from SKYPOST_SECRET_KEY or a 0600 key file.

The database keeps a check value (a token of a constant) so that a wrong or
replaced key is noticed at start, before anything is written with it."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

ENV_VAR = "SKYPOST_SECRET_KEY"
KEY_CHECK_SETTING = "secret_key_check"
_KEY_CHECK_TEXT = "skypost secret key check"


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
    """The cipher of the configured key; never creates one (only `skypost init` does)."""
    if secret_key:
        key = secret_key.strip().encode()
        source = ENV_VAR
    else:
        try:
            key = key_file.read_bytes().strip()
        except FileNotFoundError:
            raise SecretKeyError(
                f"no secret key: {key_file} does not exist and {ENV_VAR} is not set; restore the "
                f"key file (or set {ENV_VAR}), or run `skypost init` on a database without accounts"
            ) from None
        except OSError as exc:
            raise SecretKeyError(f"cannot read the secret key file {key_file}: {exc.strerror}") from None
        source = str(key_file)
    try:
        return Cipher(Fernet(key), source)
    except (ValueError, TypeError):
        raise SecretKeyError(f"the secret key in {source} is not a valid Fernet key") from None


def key_check(cipher: "Cipher") -> str:
    """The value stored beside the secrets that proves a key is theirs."""
    return cipher.encrypt(_KEY_CHECK_TEXT)


def verify_key(cipher: "Cipher", *, check: str | None, sample: str | None) -> None:
    """Refuse a key that cannot read this database's secrets.

    `check` is the stored key check (None before one was stored), `sample` one stored
    secret (None when there is none)."""
    readable = True
    if check is not None:
        readable = cipher.can_read(check)
    elif sample is not None:
        readable = cipher.can_read(sample)
    if not readable:
        raise SecretKeyError(
            f"the secret key in {cipher.source} is not the key of this database (its secrets cannot "
            f"be decrypted): restore the original key file or set {ENV_VAR} to the original key; "
            "nothing was changed"
        )


class Cipher:
    def __init__(self, fernet: Fernet, source: str = "the secret key"):
        self._fernet = fernet
        self.source = source  # where the key came from: the key file or the variable

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                f"a stored secret cannot be decrypted with the key in {self.source}: "
                "was the secret key changed?") from None

    def can_read(self, token: str) -> bool:
        try:
            self._fernet.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def __repr__(self) -> str:  # never show key material
        return "Cipher(<hidden>)"

"""Encryption of secrets at rest (passwords, tokens) with MultiFernet."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)


class SecretBox:
    """Encrypts with the first key, decrypts with any (so keys can be rotated)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:  # wrong key set: say so without leaking anything
            raise ValueError("secret cannot be decrypted with the configured keys") from exc

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode("ascii")).decode("ascii")

    def __repr__(self) -> str:
        return "SecretBox(***)"


def parse_keys(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


class KeyConfigError(Exception):
    """The keys can't be settled without the operator (the message says what to do)."""


HOW_TO_MAKE_A_KEY = (
    'make one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


def load_or_create_keys(configured: str | None, key_file: Path, *, refuse_new: str | None = None) -> list[str]:
    """Keys from configuration; else from the key file; else a new key file (mode 0600), unless
    `refuse_new` says why a fresh key would be wrong (secrets already stored under another key,
    or a database shared by several instances): then KeyConfigError with that reason."""
    if configured:
        return parse_keys(configured)
    if key_file.exists():
        keys = parse_keys(key_file.read_text(encoding="ascii"))
        if keys:
            return keys
    if refuse_new:
        raise KeyConfigError(
            f"ENCRYPTION_KEYS is not set and {key_file} does not exist, and a new key would be wrong: "
            f"{refuse_new}. Set ENCRYPTION_KEYS (the same on every instance; {HOW_TO_MAKE_A_KEY})."
        )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode("ascii")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    os.chmod(key_file, 0o600)
    log.warning(
        "ENCRYPTION_KEYS is not set: generated a new key in %s (mode 0600). "
        "Back it up: without it stored mailbox passwords cannot be read.",
        key_file.resolve(),
    )
    return [key]

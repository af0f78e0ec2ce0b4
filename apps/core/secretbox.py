"""Encrypts small secrets (connection passwords) stored in the metadata database.

The key is derived from SECRET_KEY, so rotating SECRET_KEY means re-entering
the stored passwords (docs/OPERATIONS.md says so).
"""
import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from apps.core.errors import UserError


def _key() -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"backupsite-secretbox").derive(
        settings.SECRET_KEY.encode()
    )


def seal(plaintext: str) -> str:
    if not plaintext:
        return ""
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(_key()).encrypt(nonce, plaintext.encode(), None)).decode()


def unseal(token: str) -> str:
    if not token:
        return ""
    raw = base64.b64decode(token)
    try:
        return AESGCM(_key()).decrypt(raw[:12], raw[12:], None).decode()
    except InvalidTag:
        raise UserError("A stored secret cannot be decrypted (was SECRET_KEY changed?). Set it again.") from None

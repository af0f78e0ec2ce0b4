"""Master keys and per-artifact data keys.

Each artifact gets a fresh random 256-bit data key; only its wrapped form
(AES-256-GCM under a master key, which is named by a key id) is stored. Several
master keys can be configured: the first encrypts new artifacts, the rest keep
old artifacts readable after a rotation.
"""
import base64
import os
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
WRAP_AAD_PREFIX = b"pgbr-data-key:"


class KeyError_(Exception):
    """A key is missing or malformed (named to avoid shadowing the builtin)."""


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes]
    current_id: str

    @classmethod
    def parse(cls, spec: str) -> "Keyring | None":
        """Parse "keyid:base64,keyid:base64"; an empty spec means encryption is off."""
        spec = (spec or "").strip()
        if not spec:
            return None
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            key_id, sep, b64 = item.partition(":")
            if not sep or not KEY_ID_RE.match(key_id):
                raise KeyError_("BACKUP_ENCRYPTION_KEYS must be a comma list of keyid:base64-32-bytes.")
            try:
                raw = base64.b64decode(b64, validate=True)
            except ValueError:
                raise KeyError_(f"Encryption key {key_id!r} is not valid base64.") from None
            if len(raw) != 32:
                raise KeyError_(f"Encryption key {key_id!r} must decode to 32 bytes, not {len(raw)}.")
            if key_id in keys:
                raise KeyError_(f"Encryption key id {key_id!r} is listed twice.")
            keys[key_id] = raw
            order.append(key_id)
        if not order:
            return None
        return cls(keys=keys, current_id=order[0])

    def master(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise KeyError_(
                f"Master key {key_id!r} is not configured; add it to BACKUP_ENCRYPTION_KEYS to read this backup."
            ) from None

    def new_data_key(self) -> tuple[bytes, str, bytes]:
        """Return (data key, master key id, wrapped data key)."""
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, self.current_id, wrap(self.master(self.current_id), self.current_id, data_key)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        return unwrap(self.master(key_id), key_id, wrapped)


def wrap(master: bytes, key_id: str, data_key: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(master).encrypt(nonce, data_key, WRAP_AAD_PREFIX + key_id.encode())


def unwrap(master: bytes, key_id: str, wrapped: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag

    try:
        return AESGCM(master).decrypt(wrapped[:12], wrapped[12:], WRAP_AAD_PREFIX + key_id.encode())
    except (InvalidTag, ValueError):
        raise KeyError_(f"The data key does not unwrap with master key {key_id!r} (wrong key material?).") from None


def generate_spec(key_id: str = "k1") -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def configured_keyring() -> Keyring | None:
    from django.conf import settings

    return Keyring.parse(settings.BACKUP_ENCRYPTION_KEYS)

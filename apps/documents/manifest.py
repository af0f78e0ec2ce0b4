"""The version manifest: every entry of the tree and the packs the version added (docs/FORMAT.md).

It is encoded through the pipeline like any artifact (its paths are confidential too), written last (the
version's commit marker), and authenticated against the catalog when read back. Its entries are still
checked one by one before use: a path is relative, POSIX, without "", "." or ".." parts (`check_path`).
"""
import json
from dataclasses import dataclass

from apps.core.errors import UserError
from apps.documents.models import DocumentVersion
from apps.pipeline.artifact import ArtifactError, Decoder, Encoder
from apps.pipeline.keys import Keyring
from apps.storage import backends

FORMAT = "documents-version/1"
TYPES = ("file", "dir", "symlink")


class UnsafePath(ValueError):
    """A path from a manifest (or a user) that could leave the directory it is meant for."""


def check_path(path) -> str:
    if not isinstance(path, str) or not path or "\x00" in path or path.startswith("/") or "\\" in path:
        raise UnsafePath(f"Refusing the path {path!r}: not a relative POSIX path.")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise UnsafePath(f"Refusing the path {path!r}: it has an empty, '.' or '..' part.")
    return path


def normalize_request_path(path: str | None) -> str | None:
    """A --path / ?path= from a user: leading and trailing slashes dropped; None or "" for the whole tree."""
    if path is None:
        return None
    path = path.strip().strip("/")
    if not path:
        return None
    try:
        return check_path(path)
    except UnsafePath as exc:
        raise UserError(str(exc)) from None


def encode(body: dict, *, compression_name: str, keyring: Keyring | None) -> tuple[bytes, Encoder]:
    raw = json.dumps({"format": FORMAT, **body}, separators=(",", ":")).encode()
    encoder = Encoder(compression_name=compression_name, keyring=keyring, compression_threads=0)
    return b"".join(encoder.encode([raw])), encoder


@dataclass(frozen=True)
class ManifestRecord:
    """What the catalog recorded of a version's manifest (the shape Decoder.for_record reads)."""

    sha256_stored: str
    sha256_raw: str
    compression: str
    cipher: str
    key_id: str

    @classmethod
    def of(cls, version: DocumentVersion) -> "ManifestRecord":
        return cls(sha256_stored=version.manifest_sha256_stored, sha256_raw=version.manifest_sha256_raw,
                   compression=version.manifest_compression, cipher=version.manifest_cipher,
                   key_id=version.manifest_key_id)


def load(version: DocumentVersion, *, keyring: Keyring | None, location=None) -> dict:
    """The version's manifest from its storage location (or `location`, one holding a replica of it),
    authenticated against the catalog."""
    if not version.manifest_key:
        raise UserError(f"Version {version.pk} has no manifest (it is {version.status}).")
    location = location or version.storage_location
    backend = backends.for_location(location)
    decoder = Decoder.for_record(ManifestRecord.of(version), keyring=keyring)
    try:
        raw = b"".join(decoder.decode(backend.get_stream(version.manifest_key)))
    except backends.ObjectMissing:
        raise UserError(f"The manifest of version {version.pk} is missing from "
                        f"{location.name}.") from None
    except ArtifactError as exc:
        raise UserError(f"The manifest of version {version.pk} in {location.name} is not intact: {exc}") from None
    except backends.StorageError as exc:
        raise UserError(f"The manifest of version {version.pk} cannot be read from {location.name}: {exc}") from None
    body = json.loads(raw)
    if not isinstance(body, dict) or body.get("format") != FORMAT or not isinstance(body.get("entries"), list):
        raise UserError(f"The manifest of version {version.pk} is not a {FORMAT} manifest.")
    return body


def select(entries: list[dict], path: str | None) -> list[dict]:
    """Entries at `path` or under it (all for None); UserError when there are none."""
    if path is None:
        return entries
    prefix = path + "/"
    chosen = [e for e in entries if isinstance(e, dict) and (e.get("path") == path
                                                              or str(e.get("path", "")).startswith(prefix))]
    if not chosen:
        raise UserError(f"No file or directory {path!r} in this version.")
    return chosen

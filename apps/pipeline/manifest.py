"""The manifest: written last, it is the commit marker and makes a location self-describing."""
import json

MANIFEST_VERSION = 1


def dumps(manifest: dict) -> bytes:
    return json.dumps({"manifest_version": MANIFEST_VERSION, **manifest}, indent=2, sort_keys=True).encode()


def loads(data: bytes) -> dict:
    manifest = json.loads(data)
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise ValueError(f"Unsupported manifest version {manifest.get('manifest_version')!r}.")
    return manifest

"""The manifest: written last, it is the commit marker and makes a location self-describing."""
import json
from datetime import datetime

MANIFEST_VERSION = 1


def dumps(manifest: dict) -> bytes:
    return json.dumps({"manifest_version": MANIFEST_VERSION, **manifest}, indent=2, sort_keys=True).encode()


def loads(data: bytes) -> dict:
    manifest = json.loads(data)
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise ValueError(f"Unsupported manifest version {manifest.get('manifest_version')!r}.")
    return manifest


def backup_manifest(
    *, backup_id: str, target: dict, kind: str, fmt: str, parent: str | None, created_at: datetime,
    started_at: datetime, finished_at: datetime, artifacts: list[dict], extra: dict,
) -> bytes:
    """The manifest of one backup (docs/FORMAT.md): common fields, the artifacts, and what its kind adds."""
    common = {
        "backup_id": backup_id,
        "target": target,
        "kind": kind,
        "format": fmt,
        "parent": parent,
        "created_at": created_at.isoformat(),
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "artifacts": artifacts,
    }
    clash = set(common) & set(extra)
    if clash:
        raise ValueError(f"A backup kind may not override the manifest fields {sorted(clash)}.")
    return dumps({**common, **extra})

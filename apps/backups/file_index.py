"""The file index of a physical backup (artifact `files.json`): every file of the cluster, and which
backup of the chain holds its content. A full's index comes from the tar headers of its base backup;
an incremental's from its walk of the data directory. See docs/FORMAT.md.
"""
import json

from apps.backups.models import Backup
from apps.core.errors import UserError

NAME = "files.json"
# 2: an entry may carry "deltas" (the links whose pages.delta, applied in order over the holder's file, give its
# content); an index of version 1 has none. A reader of version 1 only would restore such a file wrong: refused.
VERSION = 2
READABLE = (1, 2)


def dumps(*, backup_id: str, parent: str | None, started_at: float, files: list[dict], **extra) -> bytes:
    body = {"file_index_version": VERSION, "backup_id": backup_id, "parent": parent, "started_at": started_at,
            **extra, "files": files}
    return json.dumps(body, separators=(",", ":")).encode()


def load(backup: Backup, backend=None) -> dict:
    """The index of a backup, read through the authenticating decoder (held to the catalog's record), from
    `backend`, or (None) from the first healthy copy (apps/backups/sources.py, which reads every artifact back)."""
    from apps.backups.restores import artifact_stream

    artifact = backup.artifacts.filter(name=NAME).first()
    if artifact is None:
        raise UserError(f"Backup {backup.pk} has no file index ({NAME}); it cannot anchor an incremental chain.")
    index = json.loads(b"".join(artifact_stream(backup=backup, artifact=artifact, backend=backend)))
    if index.get("file_index_version") not in READABLE or index.get("backup_id") != backup.pk:
        raise UserError(f"The file index of backup {backup.pk} is not this backup's (or of an unknown version).")
    return index

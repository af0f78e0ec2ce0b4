"""Repository keys, identical in every storage location (docs/FORMAT.md)."""


def backup_prefix(target_slug: str, backup_id: str) -> str:
    return f"targets/{target_slug}/backups/{backup_id}"


def artifact_key(target_slug: str, backup_id: str, name: str) -> str:
    return f"{backup_prefix(target_slug, backup_id)}/{name}"


def manifest_key(target_slug: str, backup_id: str) -> str:
    return f"{backup_prefix(target_slug, backup_id)}/manifest.json"


def stored_name(name: str, compression_suffix: str, encrypted: bool) -> str:
    return f"{name}{compression_suffix}{'.aead' if encrypted else ''}"


def wal_prefix(target_slug: str, timeline: int) -> str:
    return f"targets/{target_slug}/wal/{timeline:08X}"


def wal_key(target_slug: str, timeline: int, stored: str) -> str:
    """Key of an archived WAL file: the timeline in PostgreSQL's 8-digit hex, then the file's stored name."""
    return f"{wal_prefix(target_slug, timeline)}/{stored}"

"""Repository keys of document backups, identical in every storage location (docs/FORMAT.md).

Chunks are stored in packs (many chunks per object, as restic does) rather than one object per chunk
under `chunks/<sha[:2]>/<sha>` as DESIGN.md first sketched: thousands of small puts would dominate a
backup's time on every backend (docs/DECISIONS.md).
"""
from apps.backups.layout import stored_name
from apps.core.ids import new_id
from apps.pipeline import compression


def manifest_key(source_slug: str, version_id: str, *, compression_name: str, encrypted: bool) -> str:
    name = stored_name(f"{version_id}.json", compression.SUFFIX[compression_name], encrypted)
    return f"sources/{source_slug}/versions/{name}"


def new_pack_key(*, compression_name: str, encrypted: bool) -> str:
    """A fresh, unique pack key: packs/<2 hex>/<id>.pack[.zst][.aead] (the id is a ULID, lower case)."""
    pack_id = new_id().lower()
    return f"packs/{pack_id[-2:]}/{stored_name(pack_id + '.pack', compression.SUFFIX[compression_name], encrypted)}"

"""Verify a version: read back every pack it references, check every chunk's SHA-256, name the damaged files.

A pack is decoded as a stream: its frames are authenticated one by one, so when a frame fails, the chunks
before it are still checked and only the files with a chunk at or after the damage are reported corrupt.
"""
import hashlib
from collections import defaultdict

from apps.documents import manifest
from apps.documents.chunks import ChunkStore
from apps.documents.models import DocumentPack, DocumentVersion
from apps.jobs.progress import JobContext, note
from apps.pipeline.artifact import ArtifactError, Decoder
from apps.pipeline.keys import configured_keyring
from apps.storage import backends


def verify_version(*, version: DocumentVersion, ctx: JobContext | None = None) -> dict:
    keyring = configured_keyring()
    body = manifest.load(version, keyring=keyring)  # raises if the manifest itself is missing or altered
    files = [e for e in body["entries"] if isinstance(e, dict) and e.get("type") == "file"]
    users: dict[str, list[str]] = defaultdict(list)  # chunk -> paths
    for e in files:
        for sha in e.get("chunks") or []:
            users[sha].append(e["path"])
    store = ChunkStore(location=version.storage_location, keyring=keyring)
    try:
        store.locate(users)
    finally:
        store.close()
    bad: dict[str, str] = {}  # chunk -> "missing" | "corrupt"
    by_pack: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for sha in users:
        where = store.where.get(sha)
        if where is None or where[0] not in store.packs:
            bad[sha] = "missing"
        else:
            by_pack[where[0]].append((sha, where[1], where[2]))
    checked_bytes = 0
    damaged_packs: list[str] = []
    for pack_id, wanted in by_pack.items():
        pack = store.packs[pack_id]
        data = bytearray()
        problem = ""
        try:
            for piece in Decoder.for_record(pack, keyring=keyring).decode(store.backend.get_stream(pack.key)):
                data += piece
        except backends.ObjectMissing:
            problem = "missing"
        except ArtifactError as exc:
            problem = "corrupt"
            note(ctx, f"pack {pack.key}: {exc}")
        if problem:
            damaged_packs.append(pack.key)
        for sha, off, length in wanted:
            if problem == "missing":
                bad[sha] = "missing"
            elif off + length > len(data) or hashlib.sha256(memoryview(data)[off:off + length]).hexdigest() != sha:
                bad[sha] = "corrupt"
        checked_bytes += len(data)
        if ctx is not None:
            ctx.progress(checked_bytes)
    if damaged_packs:  # not offered for reuse any more: the next backup that has these chunks stores them anew
        DocumentPack.objects.filter(location=version.storage_location, key__in=damaged_packs).update(damaged=True)
    missing = sorted({p for sha, kind in bad.items() if kind == "missing" for p in users[sha]})
    corrupt = sorted({p for sha, kind in bad.items() if kind == "corrupt" for p in users[sha]} - set(missing))
    note(ctx, f"verified version {version.pk}: {len(files)} files, {len(users)} chunks in {len(by_pack)} packs; "
              f"{len(missing)} files missing, {len(corrupt)} corrupt")
    return {"version": version.pk, "ok": not bad and not damaged_packs, "damaged_packs": damaged_packs, "files": len(files), "chunks": len(users),
            "packs": len(by_pack), "bytes_checked": checked_bytes, "missing": missing, "corrupt": corrupt}

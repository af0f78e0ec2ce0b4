"""Verify a version: read back every pack it references, check every chunk's SHA-256, name the damaged files.

A pack is decoded as a stream: its frames are authenticated one by one, so when a frame fails, the chunks
before it are still checked and only the files with a chunk at or after the damage are reported corrupt.
"""
import hashlib
from collections import defaultdict

from apps.documents import gcpause
from apps.documents.chunks import ChunkStore
from apps.documents.models import DocumentPack, DocumentVersion
from apps.jobs.progress import JobContext, note
from apps.pipeline.artifact import ArtifactError, Decoder
from apps.pipeline.keys import configured_keyring
from apps.storage import backends


def verify_version(*, version: DocumentVersion, ctx: JobContext | None = None) -> dict:
    with gcpause.paused():
        return _verify_version(version=version, ctx=ctx)


def _verify_version(*, version: DocumentVersion, ctx: JobContext | None) -> dict:
    from apps.documents.replication import load_manifest

    keyring = configured_keyring()
    body, locations = load_manifest(version, keyring=keyring, ctx=ctx)  # raises if no intact copy is left
    files = [e for e in body["entries"] if isinstance(e, dict) and e.get("type") == "file"]
    users: dict[str, list[str]] = defaultdict(list)  # chunk -> paths
    for e in files:
        for sha in e.get("chunks") or []:
            users[sha].append(e["path"])
    store = ChunkStore(location=version.storage_location, keyring=keyring, fallbacks=locations[1:])
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
    recovered: list[dict] = []
    for pack_id, wanted in by_pack.items():
        pack = store.packs[pack_id]
        data, problem = _read_pack(pack, store.backend, keyring, ctx)
        if problem:
            damaged_packs.append(pack.key)
            for fb in store.fallbacks:  # a healthy replica of it: the version stays whole
                if pack.key in store._held.get(fb.location.pk, ()):
                    fb_data, fb_problem = _read_pack(pack, fb, keyring, ctx)
                    if not fb_problem:
                        data, problem = fb_data, ""
                        recovered.append({"pack": pack.key, "from": fb.location.name})
                        break
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
    if recovered:
        note(ctx, f"{len(recovered)} damaged packs of {version.storage_location.name} are intact in a replica")
    ok = not bad and len(recovered) == len(damaged_packs)
    return {"version": version.pk, "ok": ok, "damaged_packs": damaged_packs, "recovered_from_replicas": recovered,
            "files": len(files), "chunks": len(users), "packs": len(by_pack), "bytes_checked": checked_bytes,
            "missing": missing, "corrupt": corrupt}


def _read_pack(pack: DocumentPack, backend, keyring, ctx) -> tuple[bytearray, str]:
    """(raw bytes decoded so far, "" | "missing" | "corrupt"): frames before a damaged one are kept."""
    data = bytearray()
    try:
        for piece in Decoder.for_record(pack, keyring=keyring).decode(backend.get_stream(pack.key)):
            data += piece
    except backends.ObjectMissing:
        return data, "missing"
    except ArtifactError as exc:
        note(ctx, f"pack {pack.key} in {backend.location.name}: {exc}")
        return data, "corrupt"
    except backends.StorageError as exc:
        note(ctx, f"pack {pack.key} in {backend.location.name}: {exc}")
        return data, "missing"
    return data, ""

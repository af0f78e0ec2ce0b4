"""Export of a version as a plain tar.gz (the seed's format), for use without this application.

Streamed: files go into the archive chunk by chunk as they are read back (each chunk checked against its
SHA-256, each file against the manifest's), written to FILE.partial-… and renamed when complete.
"""
import gzip
import hashlib
import os
import tarfile
import uuid
from pathlib import Path

from apps.core.errors import UserError
from apps.documents import manifest
from apps.documents.chunks import ChunkError, ChunkStore
from apps.documents.manifest import UnsafePath, check_path
from apps.documents.models import DocumentVersion
from apps.documents.renames import rename_noreplace
from apps.jobs.progress import JobContext, note
from apps.pipeline.keys import configured_keyring


class _FileReader:
    """A read(n)-able file for tarfile.addfile, from the chunks of one entry, checked at the end."""

    def __init__(self, entry: dict, store: ChunkStore):
        self.entry, self.store = entry, store
        self._chunks = iter(entry["chunks"])
        self._buf = memoryview(b"")
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        """Exactly n bytes unless the file ends first (tarfile takes a short read for a truncated file)."""
        out = bytearray()
        while n < 0 or len(out) < n:
            if not self._buf:
                sha = next(self._chunks, None)
                if sha is None:
                    break
                data = self.store.get(sha)  # checked against its own SHA-256
                self._hash.update(data)
                self._buf = memoryview(data)
            take = len(self._buf) if n < 0 else min(n - len(out), len(self._buf))
            out += self._buf[:take]
            self._buf = self._buf[take:]
        return bytes(out)

    def finish(self) -> None:
        """After tarfile took the entry's size: nothing may be left, and the whole must match the manifest."""
        if self._buf or next(self._chunks, None) is not None or self._hash.hexdigest() != self.entry.get("sha256"):
            raise ChunkError(f"{self.entry['path']} does not match the manifest's size and SHA-256")


def export_version(*, version: DocumentVersion, to: str, ctx: JobContext | None = None) -> dict:
    keyring = configured_keyring()
    body = manifest.load(version, keyring=keyring)
    entries = []
    for e in body["entries"]:
        try:
            check_path(e.get("path") if isinstance(e, dict) else None)
        except UnsafePath as exc:
            raise UserError(f"Version {version.pk} has an unsafe entry; not exporting it: {exc}") from None
        entries.append(e)
    final = Path(to)
    if final.exists():
        raise UserError(f"{to} exists; not overwriting it.")
    tmp = final.with_name(f"{final.name}.partial-{uuid.uuid4().hex[:12]}")
    files = size = 0
    try:
        with ChunkStore(location=version.storage_location, keyring=keyring) as store, open(tmp, "xb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            file_entries = [e for e in entries if e.get("type") == "file"]
            store.locate(c for e in file_entries for c in e["chunks"])
            store.plan(store.pack_order(c for e in file_entries for c in e["chunks"]))
            for e in entries:
                info = tarfile.TarInfo(e["path"])
                info.mtime = (e.get("mtime_ns") or 0) / 1e9
                info.mode = e.get("mode", 0o644) & 0o7777
                if e.get("type") == "dir":
                    info.type = tarfile.DIRTYPE
                    info.mode = e.get("mode", 0o755) & 0o7777
                    tar.addfile(info)
                elif e.get("type") == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, e["target"]
                    tar.addfile(info)
                elif e.get("type") == "file":
                    info.size = e["size"]
                    reader = _FileReader(e, store)
                    tar.addfile(info, reader)
                    reader.finish()
                    files += 1
                    size += e["size"]
            raw.flush()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        rename_noreplace(str(tmp), str(final))  # an archive that appeared meanwhile is not replaced
    except ChunkError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"Export of version {version.pk} stopped: {exc}") from None
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{to} exists; not overwriting it.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    note(ctx, f"exported {files} files ({size} bytes) of version {version.pk} to {to}")
    return {"version": version.pk, "files": files, "bytes": size, "path": str(final),
            "size": final.stat().st_size}

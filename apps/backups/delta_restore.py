"""Restore step after extraction: apply each link's page deltas (pages.delta) to the files extracted from their
holders, in chain order (apps/backups/page_delta.py for the format).

Which deltas apply comes from the newest file index: a file's "deltas" names the links, in chain order, whose
records for it turn the holder's version into its content at the newest backup. Records of other files (dropped
since, or stored whole again later) are passed over. Every file is checked on both sides (at its end record,
the crc32 of the pages found and of the pages made) and its size before; a record missing, a file absent or a
crc that does not match is a ChainError, and the caller removes the partial directory.
"""
import mmap
import os
from pathlib import Path

from apps.backups import page_delta
from apps.backups.page_delta import DeltaError
from apps.jobs.progress import JobContext, note


def apply_chain(root: Path, chain: list, index: dict, ctx: JobContext | None = None) -> int:
    """Apply the deltas the newest `index` relies on, link by link; the number of pages written."""
    from apps.backups.physical_restore import ChainError

    expected: dict[str, set[str]] = {}
    for entry in index["files"]:
        for link_id in entry.get("deltas") or ():
            expected.setdefault(link_id, set()).add(entry["path"])
    outside = set(expected) - {link.pk for link in chain}
    if outside:
        raise ChainError(f"The file index of {chain[-1].pk} names deltas of backups outside its chain: "
                         f"{sorted(outside)[:3]}.")
    pages = 0
    for link in chain:
        wanted = expected.pop(link.pk, set())
        if not wanted:
            continue
        artifact = link.artifacts.filter(name=page_delta.NAME).first()
        if artifact is None:
            raise ChainError(f"Backup {link.pk} has no {page_delta.NAME}, and {len(wanted)} files rely on its "
                             f"deltas (e.g. {min(wanted)}).")
        note(ctx, f"applying the page deltas of {artifact.key} to {len(wanted)} files")
        try:
            pages += apply_link(root, link, artifact, wanted)
        except DeltaError as exc:
            raise ChainError(f"The page deltas of backup {link.pk} do not fit the restored files: {exc}.") from None
        if wanted:
            raise ChainError(f"Backup {link.pk}'s {page_delta.NAME} lacks the deltas of {len(wanted)} files "
                             f"(e.g. {min(wanted)}).")
    return pages


def apply_link(root: Path, link, artifact, wanted: set[str]) -> int:
    """Apply one link's records for the files in `wanted` (each removed from it once applied)."""
    from apps.backups.restores import artifact_stream

    stream = artifact_stream(backup=link, artifact=artifact, backend=link._source_backend, hash_raw=False,
                             threaded=True)
    try:
        return apply_records(root, page_delta.Reader(stream, name=f"{page_delta.NAME} of backup {link.pk}"), wanted)
    finally:
        stream.close()


def apply_records(root: Path, reader: page_delta.Reader, wanted: set[str]) -> int:
    """Apply a delta stream's records for the files in `wanted` under `root`; the number of pages written."""
    from apps.databases.engines import tarstream

    pages = 0
    while (record := reader.next_file()) is not None:
        path, parent_size, new_size = record
        if path not in wanted:
            continue
        wanted.discard(path)
        try:
            fd = os.open(root / tarstream.safe_relpath(path), os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise DeltaError(f"{path} is not in the restored directory") from None
        try:
            size = os.fstat(fd).st_size
            if size != parent_size:
                raise DeltaError(f"{path} is {size} bytes, its delta is against {parent_size}")
            span = max(parent_size, new_size)
            if span > size:
                os.ftruncate(fd, span)  # pages past the parent's end are applied over zeros
            if span:
                with mmap.mmap(fd, span) as target:  # pages patched in place: no read and write of each
                    pages += reader.apply_file(target)
            else:
                reader.apply_file(bytearray())
            os.ftruncate(fd, new_size)
        finally:
            os.close(fd)
    return pages

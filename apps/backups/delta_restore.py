"""Restore step after extraction: apply each link's page deltas (pages.delta) to the files extracted from their
holders, in chain order (apps/backups/page_delta.py for the format).

Which deltas apply comes from the newest file index: a file's "deltas" names the links, in chain order, whose
records for it turn the holder's version into its content at the newest backup. Records of other files (dropped
since, or stored whole again later) are passed over. Every file is checked on both sides (at its end record,
the crc32 of the pages found and of the pages made) and its size before; a record missing, a file absent or a
crc that does not match is a ChainError, and the caller removes the partial directory.
"""
import os
from pathlib import Path

from apps.backups import page_delta
from apps.backups.page_delta import PAGE, DeltaError
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
            pages += apply_file(fd, reader, span, where=path)
            os.ftruncate(fd, new_size)
        finally:
            os.close(fd)
    return pages


BATCH_PAGES = 2048  # pages patched at once (16 MiB of buffer)


def apply_file(fd: int, reader: page_delta.Reader, limit: int, *, where: str) -> int:
    """Apply the current file's page records to the open file `fd` (the parent's content, `limit` bytes: zeros
    past the parent's size), then have its end record's crc checked; the number of pages.

    A batch of pages is read into one buffer (a read per run of consecutive pages), its runs are put in with
    one numpy scatter, and the pages are written back the same way. A pgbench page changed by an update and
    the hint bits set after it holds ~70 runs of ~4 bytes: a Python statement per run cost 40 µs a page, this
    costs ~12. (Mapping the file instead was no faster, and less steady, on a file just written.)"""
    import numpy as np

    crc = reader.crc
    new_crc = applied = 0
    buffer = bytearray()
    while (batch := reader.page_batch(BATCH_PAGES, limit)) is not None:
        pages, k = batch.pages, len(batch.pages)
        counts = np.array(batch.counts, dtype=np.int32)
        runs = np.frombuffer(batch.headers, dtype="<u2").astype(np.int32).reshape(-1, 2)
        kept, lengths = runs[:, 0], runs[:, 1]
        first = np.cumsum(counts) - counts  # each page's first run
        ends = np.concatenate(([0], np.cumsum(kept + lengths, dtype=np.int32)))  # each run's end, over the batch
        used = np.concatenate(([0], np.cumsum(lengths, dtype=np.int32)))  # each run's bytes' end in batch.data
        span = ends[first + counts] - ends[first]
        data = used[first + counts] - used[first]
        bad = np.flatnonzero((span > PAGE) | (data != np.array(batch.lengths, dtype=np.int32)))
        if len(bad):
            raise DeltaError(f"the runs of page {pages[bad[0]]} of {where} do not fit the page or their record")
        if len(buffer) < k * PAGE:
            buffer = bytearray(k * PAGE)
        view = memoryview(buffer)
        try:
            groups = _consecutive(pages)  # (reading the pages between too was slower: 1.6 GB/s from the cache)
            for index, page, n in groups:
                got = os.preadv(fd, [view[index * PAGE:(index + n) * PAGE]], page * PAGE)
                if got != n * PAGE:
                    raise DeltaError(f"{where} ends inside page {page + got // PAGE}")
            # Byte j of run r goes to: its page's place in the buffer + where the run starts in the page + j.
            base = np.arange(0, k * PAGE, PAGE, dtype=np.int32) - ends[first]
            run_start = np.repeat(base, counts) + ends[1:] - lengths - used[:-1]
            target = np.repeat(run_start, lengths) + np.arange(used[-1], dtype=np.int32)
            np.frombuffer(buffer, dtype=np.uint8)[target] = np.frombuffer(batch.data, dtype=np.uint8)
            new_crc = crc(new_crc, bytes(view[:k * PAGE]))  # the pages made, one after the other
            for index, page, n in groups:
                os.pwritev(fd, [view[index * PAGE:(index + n) * PAGE]], page * PAGE)
        finally:
            view.release()
        applied += k
    reader.file_applied(new_crc, applied)
    return applied


def _consecutive(pages: list[int]) -> list[tuple[int, int, int]]:
    """(index of the first, page number, count) of each run of consecutive page numbers."""
    groups, start = [], 0
    for i in range(1, len(pages) + 1):
        if i == len(pages) or pages[i] != pages[i - 1] + 1:
            groups.append((start, pages[start], i - start))
            start = i
    return groups

"""Restore step after extraction: apply each link's page deltas (pages.delta) to the files extracted from their
holders, in chain order (apps/backups/page_delta.py for the format).

Which deltas apply comes from the newest file index: a file's "deltas" names the links, in chain order, whose
records for it turn the holder's version into its content at the newest backup. Records of other files (dropped
since, or stored whole again later) are passed over. Every file's size is checked before; after, the crc of the
pages made is checked against its end record (a page found that differs from the delta's parent in a byte the
delta keeps makes a page that differs). A record missing, a file absent or a crc that does not match is a
ChainError, and the caller removes the partial directory.

From a local location a link's records are applied by APPLY_PROCESSES forked processes side by side: each reads
the whole stream and applies every other batch of records, the crcs of its batches are combined in order in the
parent (page_delta.crc_combine) and checked as one.
"""
import os
from collections.abc import Callable, Iterator
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


# Processes applying a link's page deltas side by side: each decodes and parses the whole stream and applies its
# share, so past a few the parsing they all repeat outweighs the share they save.
APPLY_PROCESSES = min(4, max(2, os.cpu_count() or 1))
BATCH_PAGES = 2048  # records applied at once (16 MiB of buffer)


def apply_link(root: Path, link, artifact, wanted: set[str]) -> int:
    """Apply one link's records for the files in `wanted` (each removed from it once applied)."""
    from apps.documents import forked

    if forked.available() and link._source_backend.location.kind == "local":  # (no cloud SDK in a fork)
        return apply_in_processes(root, lambda: _stream(link, artifact), wanted, name=_name(link))
    stream = _stream(link, artifact)
    try:
        return apply_records(root, page_delta.Reader(stream, name=_name(link)), wanted)
    finally:
        stream.close()


def _stream(link, artifact):
    """The link's decoded page deltas, held to the header its file index records (as its tars are: no SHA-256
    of every stored byte where that is known; physical_restore._expected_header)."""
    from apps.backups.physical_restore import _expected_header
    from apps.backups.restores import artifact_stream

    return artifact_stream(backup=link, artifact=artifact, backend=link._source_backend, hash_raw=False,
                           threaded=True, expected_header=_expected_header(link, artifact))


def _name(link) -> str:
    return f"{page_delta.NAME} of backup {link.pk}"


def apply_in_processes(root: Path, open_stream: Callable[[], Iterator[bytes]], wanted: set[str], *, name: str,
                       shares: int = APPLY_PROCESSES) -> int:
    """apply_records in `shares` forked processes, each reading its own stream from `open_stream()` (see the
    module's doc); the number of pages written."""
    import numpy  # noqa: F401 (once, before the fork, not in each child)

    from apps.documents import forked

    def work(share: int, report) -> dict:
        stream = open_stream()
        try:
            reader = page_delta.Reader(stream, name=name)
            return {"files": apply_share(root, reader, set(wanted), share, shares), "polynomial": reader.polynomial}
        except (DeltaError, OSError) as exc:
            return {"error": str(exc) or type(exc).__name__}
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    results = forked.run(list(range(shares)), work)
    for got in results:
        if got is not None and "error" in got:
            raise DeltaError(got["error"])
    if any(got is None for got in results):
        raise DeltaError("a process applying them died")
    pages = _finish(root, results)
    wanted.difference_update(results[0]["files"])
    return pages


def _finish(root: Path, results: list[dict]) -> int:
    """Check each file the shares (`results`, apply_share's in "files") applied records to, and set its size:
    one share found it at the parent's size, and the crcs of their batches, combined in order, are the one its
    end record holds. The number of pages."""
    from apps.databases.engines import tarstream

    files = results[0]["files"]
    if any(got["files"].keys() != files.keys() for got in results):
        raise DeltaError("the processes applying them found different files")
    pages = 0
    for path, info in files.items():
        seen = min(got["files"][path]["seen"] for got in results)  # the first to open it saw it unextended
        if seen != info["parent_size"]:
            raise DeltaError(f"{path} is {seen} bytes, its delta is against {info['parent_size']}")
        crc = 0
        for _, batch_crc, count in sorted(b for got in results for b in got["files"][path]["batches"]):
            crc = page_delta.crc_combine(results[0]["polynomial"], crc, batch_crc, count * PAGE)
            pages += count
        if crc != info["crc"]:
            raise page_delta.wrong_pages(path)
        fd = _open_restored(root, path)
        try:
            os.ftruncate(fd, info["new_size"])
            tarstream.start_writeback(fd)  # the pages no delta changed: the extraction left them unwritten
        finally:
            os.close(fd)
    return pages


def apply_share(root: Path, reader: page_delta.Reader, wanted: set[str], share: int, shares: int) -> dict:
    """One process's share of a stream's records for the files in `wanted`: the batches whose number (counted
    over the whole stream) is `share` modulo `shares`. Per file: its sizes, the size it had when opened here,
    the crc of its pages made that its end record holds, and (number, crc, pages) of each batch applied here.
    The caller checks that one share found it at its parent size, and sets the new size once every share is
    done."""
    files, number, buffer = {}, 0, bytearray()
    while (record := reader.next_file()) is not None:
        path, parent_size, new_size = record
        if path not in wanted:
            continue
        wanted.discard(path)
        span = max(parent_size, new_size)
        fd = _open_restored(root, path)
        try:
            size = os.fstat(fd).st_size
            if size not in (parent_size, span):  # (another share may have extended it already)
                raise DeltaError(f"{path} is {size} bytes, its delta is against {parent_size}")
            if size < span:
                os.ftruncate(fd, span)  # pages past the parent's end are applied over zeros
            batches = []
            while True:
                if number % shares == share:
                    if (batch := reader.page_batch(BATCH_PAGES, span)) is None:
                        break
                    runs = Runs(batch.pages, batch.records, batch.at, path)
                    crc, buffer = _apply_runs(fd, runs, 0, len(runs), where=path, buffer=buffer, crc=reader.crc)
                    batches.append((number, crc, len(batch.pages)))
                elif reader.page_batch(BATCH_PAGES, span, skip=True) is None:
                    break
                number += 1
            files[path] = {"parent_size": parent_size, "new_size": new_size, "seen": size,
                           "crc": reader.file_end()[1], "batches": batches}
        finally:
            os.close(fd)
    return files


def apply_records(root: Path, reader: page_delta.Reader, wanted: set[str]) -> int:
    """Apply a delta stream's records for the files in `wanted` under `root`, in this process; the number of
    pages written."""
    files = apply_share(root, reader, wanted, 0, 1)
    return _finish(root, [{"files": files, "polynomial": reader.polynomial}])


def _open_restored(root: Path, path: str) -> int:
    from apps.databases.engines import tarstream

    try:
        return os.open(root / tarstream.safe_relpath(path), os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise DeltaError(f"{path} is not in the restored directory") from None


class Runs:
    """A batch of a file's page records as they lie in `region` (each from its fields on, beginning at its `at`),
    with their page numbers (`pages`), put into pages wherever they are (`put`). Each record is checked as it
    is put: its runs fit the page, and their bytes are its data."""

    def __init__(self, pages, region, at, where: str):
        import numpy as np

        self.pages = np.asarray(pages, dtype=np.int64)
        self.region, self.where = region, where
        self.at = np.asarray(at, dtype=np.int32)  # (a batch is far under 2 GiB)

    def __len__(self) -> int:
        return len(self.pages)

    def put(self, target, i: int, j: int, slots) -> None:
        """Records i..j-1 into `target` (a writable buffer of whole pages): record i + r's page is page slots[r].
        DeltaError if one does not fit (what `target` holds then is not to be used)."""
        import numpy as np

        if i >= j:
            return
        bad = put_records(target, self.region, self.at[i:j], np.ascontiguousarray(slots, dtype=np.int32))
        if bad >= 0:
            raise DeltaError(f"the runs of page {self.pages[i + bad]} of {self.where} do not fit the page or "
                             "their record")


def _numpy_put(target, region, at, slots) -> int:
    """_pagepatch.put with numpy (where the C module was not built): the same checks and the same pages, with
    index arrays as long as the runs' bytes (a dozen passes over them). Returns -1, or the index of the first
    record that does not fit (the records before it are put)."""
    import numpy as np

    src, out = np.frombuffer(region, dtype=np.uint8), np.frombuffer(target, dtype=np.uint8)
    at, slots = at.astype(np.int64), slots.astype(np.int64)
    count = len(at)

    def first(bad) -> int:
        return int(np.argmax(bad)) if bad.any() else len(bad)

    n = first((at < 0) | (at + 8 > len(src)) | (slots < 0) | ((slots + 1) * PAGE > len(out)))
    at, slots = at[:n], slots[:n]
    counts, lengths = _u16(src, at + 4), _u16(src, at + 6)
    n = first(at + 8 + 4 * counts + lengths > len(src))
    at, slots, counts, lengths = at[:n], slots[:n], counts[:n], lengths[:n]
    runs = _u16(src, _spans(at + 8, 2 * counts, step=2)).reshape(-1, 2)  # (bytes kept before, run length)
    kept, sizes = runs[:, 0], runs[:, 1]
    first_run = np.cumsum(counts) - counts
    ends = np.concatenate(([0], np.cumsum(kept + sizes)))  # each run's end, over all
    used = np.concatenate(([0], np.cumsum(sizes)))  # each run's bytes' end, over all
    n = first((ends[first_run + counts] - ends[first_run] > PAGE) | (used[first_run + counts] - used[first_run]
                                                                     != lengths))
    if n:
        r1, d1 = int(first_run[n - 1] + counts[n - 1]), int(used[first_run[n - 1] + counts[n - 1]])
        # Byte d of run r goes to: its page's place + where the run starts in the page + (d - the run's first).
        run_start = np.repeat(slots[:n] * PAGE - ends[first_run[:n]], counts[:n]) + ends[1:r1 + 1] \
            - sizes[:r1] - used[:r1]
        out[np.repeat(run_start, sizes[:r1]) + np.arange(d1)] = src[_spans(at[:n] + 8 + 4 * counts[:n],
                                                                            lengths[:n])]
    return n if n < count else -1


def _u16(src, where):
    """The little-endian u16 at each of `where` in the byte array `src`."""
    import numpy as np

    return src[where].astype(np.int64) | (src[where + 1].astype(np.int64) << 8)


def _spans(starts, lengths, step: int = 1):
    """The indexes of each span [start, start + step * length), `step` apart, one after the other (numpy)."""
    import numpy as np

    return np.repeat(starts - step * (np.cumsum(lengths) - lengths), lengths) + step * np.arange(int(lengths.sum()))


try:  # the compiled patcher (apps/backups/_pagepatch.c), built at install where a C compiler is
    from apps.backups._pagepatch import put as put_records
except ImportError:
    put_records = _numpy_put


def _apply_runs(fd: int, runs: Runs, i: int, j: int, *, where: str, buffer: bytearray, crc, zeros: bool = False
                ) -> tuple[int, bytearray]:
    """Apply records i..j-1 of a parsed batch to the open file `fd`; the crc of the pages made and the buffer
    (kept for the next batch). `zeros`: the pages are past the file's data, and not read (`fd` may be
    write-only).

    The pages are read into one buffer (a read per run of consecutive pages: reading the pages between too was
    slower, 1.6 GB/s from the page cache), the runs put in at once (Runs.put), and the pages written back the
    same way. A pgbench page changed by an update and the hint bits set after it holds ~70 runs of ~4 bytes: a
    Python statement per run cost 40 µs a page. (Mapping the file instead was no faster, and less steady, on a
    file just written.)"""
    import numpy as np

    from apps.databases.engines import tarstream

    pages, k = runs.pages[i:j].tolist(), j - i
    if len(buffer) < k * PAGE:
        buffer = bytearray(k * PAGE)
    view = memoryview(buffer)
    try:
        groups = _consecutive(pages)
        if zeros:
            view[:k * PAGE] = bytes(k * PAGE)
        for index, page, n in [] if zeros else groups:
            got = os.preadv(fd, [view[index * PAGE:(index + n) * PAGE]], page * PAGE)
            if got != n * PAGE:
                raise DeltaError(f"{where} ends inside page {page + got // PAGE}")
        runs.put(buffer, i, j, np.arange(k, dtype=np.int32))
        made = crc(0, bytes(view[:k * PAGE]))  # the pages made, one after the other
        for index, page, n in groups:
            os.pwritev(fd, [view[index * PAGE:(index + n) * PAGE]], page * PAGE)
        tarstream.start_writeback(fd, pages[0] * PAGE, (pages[-1] + 1 - pages[0]) * PAGE)  # a head start for fsync
    finally:
        view.release()
    return made, buffer


def _consecutive(pages: list[int]) -> list[tuple[int, int, int]]:
    """(index of the first, page number, count) of each run of consecutive page numbers."""
    groups, start = [], 0
    for i in range(1, len(pages) + 1):
        if i == len(pages) or pages[i] != pages[i - 1] + 1:
            groups.append((start, pages[start], i - start))
            start = i
    return groups

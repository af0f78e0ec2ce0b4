"""Restore: a link's page deltas put into the pages as the extraction writes them, instead of after it.

Applied after the extraction (delta_restore), every page a delta changes is written to the disk twice and read
once more: pgbench's incremental changes 62,000 of the full's 102,000 pages, and that second pass was a third of
the restore. When every file with deltas relies on one link's (`deltas` of one backup in the newest index):

1. `spool`, before the extraction processes are forked: that link's `pages.delta` is decoded once
   (authenticated as it is read, like every artifact) into an unlinked temporary file beside the restore
   (nothing is left if the process dies), and where each record of the wanted files begins into another;
   per file: its batches of records (so that a process starting inside a file starts at its batch), how many
   there are and the crc of the pages they make;
2. in the extraction processes, a file with deltas is written through a `FilePatch`: its whole pages that have
   a record are copied, their runs put in (delta_restore.Runs), and written; the others go straight from the
   stream. A page split between two chunks is held until whole. A part of a full's tar that begins or ends
   inside a page leaves that page's record to `finish`. At the file's end (in the process that writes it)
   its size must be the delta's parent size, and the records of pages past it are made over zeros;
3. `finish`, once every process has stopped: the records no process applied are applied in place, then each
   file's crc (the crcs of its runs of records, combined in order: page_delta.crc_combine) is checked against
   the recorded one and the file is set to its new size.

Otherwise (deltas of two links on one file, or an extraction in this process) delta_restore applies them
afterwards.
"""
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

from apps.backups import page_delta
from apps.backups.delta_restore import BATCH_PAGES, Runs, _apply_runs, _open_restored, _u16
from apps.backups.page_delta import PAGE, DeltaError
from apps.core.durable import write_all

class Mark(NamedTuple):
    """A batch of a file's records (BATCH_PAGES of them, the last fewer) in the spool."""
    page: int  # of its first record
    index: int  # of its first record, in the file's
    previous: int  # the page of the record before it (-1: none)
    start: int  # where its first record's fields begin (after its tag)
    end: int  # where its last record ends


class FileDelta(NamedTuple):
    marks: list[Mark]
    base: int  # where its records' offsets begin in the spool's offsets (in records)
    parent_size: int
    new_size: int
    records: int
    crc: int  # of the pages made


class Spool:
    """One link's page-delta stream, decoded, in an unlinked temporary file, and where each record of the
    wanted files begins in another; `files`: the wanted files' records. A batch of records is located from
    there with numpy (`runs`), not record by record (~5 µs a record in Python), and put where it lies."""

    def __init__(self, file, offsets, magic: bytes, files: dict[str, FileDelta], name: str):
        self.file, self.offsets, self.magic, self.files, self.name = file, offsets, magic, files, name
        self.polynomial = page_delta.POLYNOMIALS[magic]
        self.crc = page_delta.CRCS[magic]
        self.reports: dict[str, list[dict]] = {}  # what each FilePatch closed here applied (in a child: its own)

    def runs(self, path: str, m: int) -> Runs:
        """The records of `path`'s batch number `m`, located (their runs are read where they lie as they are put:
        Runs.put)."""
        import numpy as np

        info = self.files[path]
        mark = info.marks[m]
        count = (info.marks[m + 1].index if m + 1 < len(info.marks) else info.records) - mark.index
        offsets = np.frombuffer(_pread(self.offsets.fileno(), 8 * count, 8 * (info.base + mark.index)), dtype="<i8")
        records = _pread(self.file.fileno(), mark.end - mark.start, mark.start)
        region = np.frombuffer(records, dtype=np.uint8)
        at = (offsets - mark.start).astype(np.int32)  # each record's fields: u32 pages skipped, u16 runs, u16 length
        misplaced = DeltaError(f"{self.name}: the records of {path} are not where they were found")
        if not len(at) or at[0] != 0 or at[-1] + 8 > len(region):
            raise misplaced
        skipped = _u16(region, at) | (_u16(region, at + 2) << 16)
        ends = at + 8 + 4 * _u16(region, at + 4) + _u16(region, at + 6)
        if ends[-1] != len(region) or not np.array_equal(ends[:-1] + 1, at[1:]):
            raise misplaced
        return Runs(mark.previous + np.cumsum(skipped + 1), records, at, path)

    def batch_of(self, path: str, *, page: int | None = None, index: int | None = None) -> int:
        """The number of `path`'s batch holding its first record of `page` or later, or its record `index` (the
        one before, when none does)."""
        import bisect

        marks = self.files[path].marks
        keys = [m.page for m in marks] if index is None else [m.index for m in marks]
        return max(0, bisect.bisect_right(keys, page if index is None else index) - 1)

    def open(self, rel: str, fd: int, offset: int) -> "FilePatch | None":
        """The writer of `rel`'s bytes from `offset` on, through `fd` (at that offset), when it has deltas."""
        return FilePatch(self, rel, fd, offset) if rel in self.files else None

    def take_reports(self) -> dict[str, list[dict]]:
        reports, self.reports = self.reports, {}
        return reports

    def close(self) -> None:
        self.file.close()
        self.offsets.close()


def _pread(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise DeltaError("the spooled page deltas end early")
    return data


_numpy: threading.Thread | None = None


def import_numpy() -> None:
    """Start importing numpy in a thread (~0.15 s of CPU), e.g. while the restore checks the chain and reads the
    index: the extraction processes then inherit it. `numpy_imported()` must follow before any fork (a child
    forked while the thread imports would inherit the import's locks)."""
    global _numpy
    import importlib

    if _numpy is None and "numpy" not in sys.modules:
        _numpy = threading.Thread(target=importlib.import_module, args=("numpy",), name="import-numpy")
        _numpy.start()


def numpy_imported() -> None:
    """Wait for import_numpy's thread, if any."""
    global _numpy
    if _numpy is not None:
        _numpy.join()
        _numpy = None


def spool(chunks, wanted: set[str], *, directory: Path, name: str) -> Spool:
    """Decode a page-delta stream (`chunks`, authenticated as they come) into a Spool of the files in `wanted`
    (each removed from it as found); numpy is imported meanwhile, before the processes that use it are forked."""
    import array

    import_numpy()
    file = tempfile.TemporaryFile(dir=directory, prefix=".pages-delta-")
    offsets = tempfile.TemporaryFile(dir=directory, prefix=".pages-delta-offsets-")
    try:
        fd = file.fileno()

        def tee():
            for chunk in chunks:
                write_all(fd, chunk)
                yield chunk

        stream = tee()
        reader, files, base = page_delta.Reader(stream, name), {}, 0
        while (record := reader.next_file()) is not None:
            path, parent_size, new_size = record
            keep = path in wanted
            count, marks = 0, []
            while True:
                previous = reader.page
                if (batch := reader.page_batch(BATCH_PAGES, max(parent_size, new_size), skip=True)) is None:
                    break
                if keep:
                    marks.append(Mark(batch.pages[0], count, previous, batch.offsets[0], reader.offset))
                    where = array.array("q", batch.offsets)
                    if sys.byteorder == "big":
                        where.byteswap()
                    offsets.write(where.tobytes())
                count += len(batch.pages)
            _old_crc, new_crc = reader.file_end()
            if keep:
                wanted.discard(path)
                files[path] = FileDelta(marks, base, parent_size, new_size, count, new_crc)
                base += count
        for _ in stream:  # past the end record: the decoder's own end checks
            pass
        offsets.flush()
        return Spool(file, offsets, reader.magic, files, name)
    except BaseException:
        file.close()
        offsets.close()
        raise
    finally:
        numpy_imported()


class FilePatch:
    """Writes one file's bytes from a tar stream (from `offset`), its whole pages with records made new on the
    way (see the module doc). `feed` the member's data in order, then `close`."""

    def __init__(self, spool: Spool, path: str, fd: int, offset: int):
        self.spool, self.path, self.fd, self.pos = spool, path, fd, offset
        self.info = spool.files[path]
        self.carry = bytearray()  # the start of a page (pos is where it begins), held until the page is whole
        self.segments: list[list[int]] = []  # [first record, crc of its pages made, records] applied here
        self._crc = spool.crc
        # The records are read from the batch holding the first of a page at or after `offset` (a process
        # extracting the end of a file starts there, not at its first record: ten parts of pgbench's big table
        # each passing over half its records before theirs cost 2 s of CPU).
        self._next = spool.batch_of(path, page=offset // PAGE) if self.info.marks else 0  # the batch to parse next
        self.index = self.info.marks[self._next].index if self.info.marks else 0  # records passed (applied or not)
        self._runs: Runs | None = None  # the parsed batch holding the next record, and its place in it
        self._at = 0
        self._buffer = bytearray()

    def _current(self) -> Runs | None:
        while self._runs is None or self._at >= len(self._runs):
            if self._next >= len(self.info.marks):
                self._runs = None
                return None
            self._runs, self._at = self.spool.runs(self.path, self._next), 0
            self._next += 1
        return self._runs

    def feed(self, data: memoryview) -> None:
        if self.pos % PAGE and not self.carry:  # a part that begins inside a page: that page's record is finish's
            take = min(len(data), PAGE - self.pos % PAGE)
            self._write(data[:take])
            data = data[take:]
        if self.carry:
            take = min(len(data), PAGE - len(self.carry))
            self.carry += data[:take]
            data = data[take:]
            if len(self.carry) < PAGE:
                return
            self._pages(memoryview(self.carry))
            self.carry = bytearray()
        whole = len(data) - len(data) % PAGE
        if whole:
            self._pages(data[:whole])
        if whole < len(data):
            self.carry = bytearray(data[whole:])

    def _write(self, data) -> None:
        write_all(self.fd, data)
        self.pos += len(data)

    def _pages(self, data: memoryview) -> None:
        """Whole pages from pos: those with records made new, then all written."""
        import numpy as np

        first, end = self.pos // PAGE, (self.pos + len(data)) // PAGE
        self._skip_to(first)
        pieces = []
        while (runs := self._current()) is not None:
            low = self._at
            high = low + int(np.searchsorted(runs.pages[low:], end))
            if high > low:
                pieces.append((runs, low, high, self.index))
                self.index += high - low
            self._at = high
            if high < len(runs):
                break
        if not pieces:
            self._write(data)
            return
        if len(self._buffer) < len(data):
            self._buffer = bytearray(len(data))
        # One buffer for the file: a new one for each chunk cost a page fault per 4 KiB (~0.3 s on pgbench).
        view = memoryview(self._buffer)[:len(data)]
        view[:] = data
        for runs, low, high, index in pieces:
            slots = (runs.pages[low:high] - first).astype(np.int32)
            runs.put(view, low, high, slots)
            # The crc of the pages made, a run of consecutive pages at a time.
            cuts = [0, *(np.flatnonzero(np.diff(slots) != 1) + 1).tolist(), high - low]
            for a, b in zip(cuts, cuts[1:]):
                self._made(index + a, view[slots[a] * PAGE:(slots[b - 1] + 1) * PAGE], b - a)
        self._write(view)

    def _skip_to(self, page: int) -> None:
        """Pass over the records of pages before `page`: not whole here, they are left to finish."""
        import numpy as np

        while (runs := self._current()) is not None:
            at = self._at
            self._at = at + int(np.searchsorted(runs.pages[at:], page))
            self.index += self._at - at
            if self._at < len(runs):
                return

    def _made(self, index: int, pages: memoryview, count: int) -> None:
        last = self.segments[-1] if self.segments else None
        if last is not None and last[0] + last[2] == index:  # the crc goes on over these pages
            last[1], last[2] = self._crc(last[1], bytes(pages)), last[2] + count
        else:
            self.segments.append([index, self._crc(0, bytes(pages)), count])

    def close(self, *, at_end: bool) -> None:
        """The stream has passed this file's bytes: all of them (`at_end`), or a part's. The report goes to
        the spool's `reports`."""
        if self.carry:  # a page cut at the end of a part: its record is finish's
            self._write(self.carry)
            self.carry = bytearray()
        if at_end:
            if self.pos != self.info.parent_size:
                raise DeltaError(f"{self.path} is {self.pos} bytes, its delta is against {self.info.parent_size}")
            self._past_end()
        self.spool.reports.setdefault(self.path, []).append({"segments": self.segments, "ended": at_end})

    def _past_end(self) -> None:
        """The records of pages at or past the parent's end (all that are left), made over zeros."""
        span = max(self.info.parent_size, self.info.new_size)
        if span > self.pos:
            os.ftruncate(self.fd, span)
        self._skip_to(-(-self.pos // PAGE))  # (a last page the parent has in part: finish reads what it has)
        buffer = bytearray()
        while (runs := self._current()) is not None:
            at, count = self._at, len(runs) - self._at
            crc, buffer = _apply_runs(self.fd, runs, at, len(runs), where=self.path, buffer=buffer, crc=self._crc,
                                      zeros=True)
            _add(self.segments, self.index, crc, count, self.spool.polynomial)
            self.index += count
            self._at = len(runs)


def _add(segments: list[list[int]], index: int, crc: int, count: int, polynomial: int) -> None:
    """Record that records index..index+count-1 made pages whose crc is `crc`: a segment of their own, or the
    end of the last one."""
    last = segments[-1] if segments else None
    if last is not None and last[0] + last[2] == index:
        last[1] = page_delta.crc_combine(polynomial, last[1], crc, count * PAGE)
        last[2] += count
    else:
        segments.append([index, crc, count])


def finish(root: Path, spool: Spool, reports: list[dict[str, list[dict]]]) -> int:
    """After the extraction: apply the records no process did, check every file's crc, set its new size (see the
    module doc). `reports`: each process's Spool.take_reports(). The number of pages made. (The files' writeback
    was started as each was extracted: starting it again here waited for the device, 0.2-0.4 s.)"""
    pages = 0
    for path, info in spool.files.items():
        done = [r for report in reports for r in report.get(path, ())]
        segments = sorted(s for r in done for s in r["segments"])
        fd = _open_restored(root, path)
        try:
            if not any(r["ended"] for r in done):  # no process wrote its end (and checked its size there)
                size = os.fstat(fd).st_size
                if size != info.parent_size:
                    raise DeltaError(f"{path} is {size} bytes, its delta is against {info.parent_size}")
                if info.new_size > size:
                    os.ftruncate(fd, info.new_size)
            segments = _apply_missing(fd, spool, path, segments)
            crc, expected = 0, 0
            for first, segment_crc, count in segments:
                if first != expected:
                    raise DeltaError(f"{path}: its records were applied out of order")  # (cannot happen)
                crc = page_delta.crc_combine(spool.polynomial, crc, segment_crc, count * PAGE)
                expected += count
            if expected != info.records or crc != info.crc:
                raise page_delta.wrong_pages(path)
            if os.fstat(fd).st_size != info.new_size:
                os.ftruncate(fd, info.new_size)
        finally:
            os.close(fd)
        pages += info.records
    return pages


def _apply_missing(fd: int, spool: Spool, path: str, segments: list[list[int]]) -> list[list[int]]:
    """Apply in place the records of `path` that no segment covers; all segments, in order."""
    covered = set()
    for first, _crc, count in segments:
        covered.update(range(first, first + count))
    missing = [i for i in range(spool.files[path].records) if i not in covered]
    buffer, runs, at = bytearray(), None, 0
    for want in missing:  # (a page cut between two parts: one here and there)
        if runs is None or not at <= want < at + len(runs):
            m = spool.batch_of(path, index=want)
            runs, at = spool.runs(path, m), spool.files[path].marks[m].index
        crc, buffer = _apply_runs(fd, runs, want - at, want - at + 1, where=path, buffer=buffer, crc=spool.crc)
        segments.append([want, crc, 1])
    return sorted(segments)


def prepare(chain: list, index: dict, *, directory: Path, ctx=None) -> Spool | None:
    """The Spool of the one link whose deltas the newest `index` relies on, when each file with deltas relies
    on that link's alone; None otherwise (no deltas, or more than one link's: delta_restore applies them after
    the extraction). ChainError when the link or its records are not there."""
    from apps.backups.delta_restore import _name, _stream
    from apps.backups.physical_restore import ChainError
    from apps.jobs.progress import note
    from apps.pipeline.readahead import read_ahead

    relied = {tuple(entry["deltas"]) for entry in index["files"] if entry.get("deltas")}
    if len(relied) != 1 or len(link_ids := next(iter(relied))) != 1:
        return None
    link = next((b for b in chain if b.pk == link_ids[0]), None)
    if link is None:
        raise ChainError(f"The file index of {chain[-1].pk} names deltas of a backup outside its chain: "
                         f"{link_ids[0]}.")
    wanted = {entry["path"] for entry in index["files"] if entry.get("deltas")}
    artifact = link.artifacts.filter(name=page_delta.NAME).first()
    if artifact is None:
        raise ChainError(f"Backup {link.pk} has no {page_delta.NAME}, and {len(wanted)} files rely on its "
                         f"deltas (e.g. {min(wanted)}).")
    note(ctx, f"reading the page deltas of {artifact.key} for {len(wanted)} files, to apply as they are extracted")
    # Decompressed in a thread of its own, a few chunks ahead of the parsing (which takes as long).
    stream = read_ahead(_stream(link, artifact), name="pages-delta")
    try:
        result = spool(stream, wanted, directory=directory, name=_name(link))
    except DeltaError as exc:
        raise ChainError(f"The page deltas of backup {link.pk} cannot be read: {exc}.") from None
    finally:
        stream.close()
    if wanted:
        result.close()
        raise ChainError(f"Backup {link.pk}'s {page_delta.NAME} lacks the deltas of {len(wanted)} files "
                         f"(e.g. {min(wanted)}).")
    result.link = link
    return result

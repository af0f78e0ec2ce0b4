"""Tar as a stream: read the headers of a tar as it passes, write members without a file, extract safely.

Physical backups are tar streams (pg_basebackup's, or ours for incrementals). Nothing here holds a whole
archive: the scanner looks at 512-byte headers only (and keeps the data of the few small members asked
for), the writer yields a member's header, data and padding, and the extractor writes each member as it
arrives, refusing anything that could land outside the target directory.
"""
import collections
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from apps.core.durable import write_all

BLOCK = 512
CHUNK = 1 << 20
ENCODING, ERRORS = "utf-8", "surrogateescape"


class TarError(Exception):
    """A tar stream that is malformed or holds a member we refuse to write."""


@dataclass(frozen=True)
class Member:
    path: str  # normalised: no leading "./", no trailing "/"
    type: str  # "file", "dir", "symlink", "hardlink" or "other"
    size: int
    mtime: int
    mode: int = 0o600
    linkname: str = ""


def _kind(tar_type: bytes) -> str:
    if tar_type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
        return "file"
    return {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}.get(tar_type, "other")


def normalise(name: str) -> str:
    name = name.rstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return name


class TarScanner:
    """Feed it a tar stream chunk by chunk; `members` lists what passed, `captured` holds small members' data.

    Only headers are parsed: the data of other members is skipped by count, so the cost is per member,
    not per byte. GNU long names (`L`) and pax headers (`x`) are understood.
    """

    MAX_CAPTURE = 1 << 20

    def __init__(self, capture: Iterable[str] = ()):
        self.members: list[Member] = []
        self.captured: dict[str, bytes] = {}
        self._capture = set(capture)
        self._header = bytearray()
        self._data_left = 0  # data bytes of the current member still to pass
        self._pad_left = 0
        self._collect: bytearray | None = None  # data kept for the current member
        self._collect_as: tuple[str, str] | None = None  # ("capture", path) | ("longname", "") | ("pax", "")
        self._long_name: str | None = None
        self._pax: dict[str, str] = {}
        self._sink = False  # the current member's data goes to _on_data (subclasses that extract)
        self.ended = False

    def feed(self, chunk: bytes) -> None:
        view, pos, end = memoryview(chunk), 0, len(chunk)
        while pos < end and not self.ended:
            if self._data_left:
                take = min(self._data_left, end - pos)
                if self._collect is not None:
                    self._collect += view[pos:pos + take]
                elif self._sink:
                    self._on_data(view[pos:pos + take])
                self._data_left -= take
                pos += take
                if not self._data_left:
                    self._member_data_done()
            elif self._pad_left:
                take = min(self._pad_left, end - pos)
                self._pad_left -= take
                pos += take
            else:
                take = min(BLOCK - len(self._header), end - pos)
                self._header += view[pos:pos + take]
                pos += take
                if len(self._header) == BLOCK:
                    block, self._header = bytes(self._header), bytearray()
                    self._on_header(block)

    def _on_header(self, block: bytes) -> None:
        if block == bytes(BLOCK):
            self.ended = True  # end-of-archive marker; what follows is padding
            return
        try:
            info = tarfile.TarInfo.frombuf(block, ENCODING, ERRORS)
        except tarfile.TarError as exc:
            raise TarError(f"Malformed tar header in the backup stream: {exc}") from None
        size = info.size
        self._pad_left = (-size) % BLOCK
        if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE):
            if size > self.MAX_CAPTURE:
                raise TarError("Implausibly large extended tar header.")
            self._start_collect(("longname" if info.type == tarfile.GNUTYPE_LONGNAME else "pax", ""), size)
            return
        if info.type == tarfile.XGLTYPE:  # global pax header: nothing we use
            self._data_left = size
            self._collect = None
            if not size:
                self._member_data_done()
            return
        path = normalise(self._pax.pop("path", None) or self._long_name or info.name)
        size = int(self._pax.pop("size", size))
        mtime = int(float(self._pax.pop("mtime", info.mtime)))
        linkname = self._pax.pop("linkpath", info.linkname)
        self._long_name, self._pax = None, {}
        kind = _kind(info.type)
        if kind != "file":
            size = 0 if kind != "other" else size
        self._pad_left = (-size) % BLOCK
        member = Member(path=path, type=kind, size=size, mtime=mtime, mode=info.mode, linkname=linkname)
        self.members.append(member)
        if kind == "file" and path in self._capture and size <= self.MAX_CAPTURE:
            self._start_collect(("capture", path), size)
        else:
            self._collect, self._collect_as, self._data_left = None, None, size
            self._sink = self._on_member(member)
            if self._sink and not size:
                self._member_data_done()

    def _on_member(self, member: Member) -> bool:
        """A member's header has passed; True to have its data handed to _on_data (then _on_member_end)."""
        return False

    def _on_data(self, data: memoryview) -> None:
        pass

    def _on_member_end(self) -> None:
        pass

    def _start_collect(self, what: tuple[str, str], size: int) -> None:
        self._collect, self._collect_as, self._data_left = bytearray(), what, size
        if not size:
            self._member_data_done()

    def _member_data_done(self) -> None:
        if self._sink:
            self._sink = False
            self._on_member_end()
            return
        data, what = self._collect, self._collect_as
        self._collect = self._collect_as = None
        if data is None or what is None:
            return
        kind, path = what
        if kind == "capture":
            self.captured[path] = bytes(data)
        elif kind == "longname":
            self._long_name = bytes(data).rstrip(b"\0").decode(ENCODING, ERRORS)
        else:
            self._pax = _parse_pax(bytes(data))


def _parse_pax(data: bytes) -> dict[str, str]:
    out, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        record = data[space + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode(ENCODING, ERRORS)] = value.decode(ENCODING, ERRORS)
        pos += length
    return out


# --- writing --------------------------------------------------------------------------------------------


def dir_member(path: str, mtime: int, mode: int = 0o700) -> bytes:
    info = tarfile.TarInfo(path)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, mtime, mode
    return info.tobuf(tarfile.PAX_FORMAT, ENCODING, ERRORS)


def file_header(path: str, *, size: int, mtime: int, mode: int = 0o600) -> bytes:
    """The tar header file_member writes first."""
    info = tarfile.TarInfo(path)
    info.size, info.mtime, info.mode = size, mtime, mode
    return info.tobuf(tarfile.PAX_FORMAT, ENCODING, ERRORS)


def file_member(path: str, *, size: int, mtime: int, chunks: Iterable[bytes], mode: int = 0o600) -> Iterator[bytes]:
    """Header, exactly `size` bytes of data (cut, or zero-padded if the source shrank), padding.

    A file of a running cluster may change while it is read; WAL replay from the backup's start
    repairs it, as for pg_basebackup, which pads a file that shrank the same way.
    """
    yield file_header(path, size=size, mtime=mtime, mode=mode)
    left = size
    for chunk in chunks:
        if len(chunk) > left:
            chunk = chunk[:left]
        if chunk:
            yield chunk
            left -= len(chunk)
        if not left:
            break
    while left:
        zeros = min(left, CHUNK)
        yield bytes(zeros)
        left -= zeros
    if size % BLOCK:
        yield bytes(BLOCK - size % BLOCK)


def end_of_archive() -> bytes:
    return bytes(2 * BLOCK)


# --- reading and extracting ------------------------------------------------------------------------------


def safe_relpath(name: str) -> PurePosixPath:
    """The member's path if it stays inside the target directory; TarError otherwise."""
    path = PurePosixPath(normalise(name))
    if not name or path.is_absolute() or name.startswith("/") or any(p in ("..", "") for p in path.parts) \
            or "\0" in name:
        raise TarError(f"Refusing tar member {name!r}: absolute or escaping path.")
    return path


class Extractor:
    """Writes tar members under `root`, which must exist; refuses links, devices and escaping paths.

    Directories are created by us (never followed through a link, since no link is ever written),
    files are created exclusively and without following links.
    """

    SYNC_QUEUE = 256  # files written but not yet handed to writeback (open descriptors) before the writer waits
    # fsyncs in flight at once in sync_all. Even a file whose data is written back costs its fsync a flush of the
    # device's cache (0.2 ms here, 1,290 files for the mixed bench's chain): 8 in flight took 0.09-0.15 s where
    # 4 took 0.17-0.23 s and 1 took 0.27 s; 12-24 were no better than 8.
    SYNC_THREADS = 8

    def __init__(self, root: Path, *, owner: tuple[int, int] | None = None, sync: bool = False,
                 rewritten: frozenset[str] = frozenset()):
        """`owner` (uid, gid): given to every file as it is created. `sync`: the writeback of each file finished
        by StreamExtractor is started (sync_file_range, not waited for) and the file closed, in a background
        thread, while the next ones are written; `sync_all` then fsyncs every file and directory under the root,
        as PostgreSQL's own `initdb --sync-only` does. Durable without a system-wide sync(), and without an fsync
        per file while files are still being created (each one forced a journal commit that held up the next
        file's creation). `rewritten`: relative paths of files a later step writes again (the restore's page
        deltas), whose writeback is not started: their pages would go to the disk twice."""
        self.root = root
        self.rewritten = rewritten
        self.files = 0
        self.bytes = 0
        self._made: set[PurePosixPath] = set()  # directories made by us (never a link: none is ever written)
        self._owner = owner
        self._syncer = None
        self._pending: collections.deque = collections.deque()
        self._precreator = None
        self._precreated: set[PurePosixPath] = set()  # made empty by the precreator
        self._opened: set[PurePosixPath] = set()  # opened for writing by open_file
        # Files written by two processes at different offsets (a full's tar cut inside them): made once, by
        # create_shared, before the processes start; open_file never truncates them.
        self.shared: set[PurePosixPath] = set()
        self._stop_precreating = None
        if sync:
            from concurrent.futures import ThreadPoolExecutor

            self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-fsync")

    def make_dir(self, rel: PurePosixPath, mode: int = 0o700) -> None:
        target = self.root.joinpath(*rel.parts)
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(target, (mode & 0o777) | 0o700)
        self._made.add(rel)

    def open_file(self, rel: PurePosixPath, mode: int) -> int:
        """A new file at `rel` (its directory made if need be), opened for writing without following links."""
        parent = rel.parent
        if parent.parts and parent not in self._made:
            self.make_dir(parent)
        mode = (mode & 0o777) | 0o600
        shared = rel in self.shared
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (0 if shared else os.O_TRUNC)
        fd = os.open(os.path.join(self.root, *rel.parts), flags, mode)
        self._opened.add(rel)
        try:
            if self._owner is not None:
                os.fchown(fd, *self._owner)
            if mode != 0o600 and (self._precreator is not None or shared):
                os.fchmod(fd, mode)  # it may have been made (0600) beforehand: O_CREAT's mode did not apply
        except BaseException:
            os.close(fd)
            raise
        return fd

    def create_shared(self, rel: PurePosixPath, size: int) -> None:
        """Make the file at `rel` (its directory made already), `size` bytes long, before the processes that each
        write a range of it start; open_file then opens it without truncating (the later opener would otherwise
        wipe what the other wrote)."""
        if rel.parent.parts and rel.parent not in self._made:
            self.make_dir(rel.parent)
        fd = os.open(os.path.join(self.root, *rel.parts), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                     0o600)
        try:
            if self._owner is not None:
                os.fchown(fd, *self._owner)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self.shared.add(rel)

    def precreate(self, rels: list[PurePosixPath]) -> None:
        """Create these files (empty, mode 0600, owned as `owner`) in a background thread, ahead of the writer.

        Creating a file is the costliest step of writing a small one (the filesystem allocates an inode under
        the directory's lock); done here, beside the decoding and the writing of data, it is off their path.
        Each path must be relative and safe (safe_relpath), its directory already made (make_dir); a file
        whose directory is not made yet is left to the writer. open_file opens without O_EXCL and truncates,
        so whichever of the two comes first creates the file. A precreated file that no member then writes
        is removed again by `sync_all` (a restore has only the files its tars hold). `close` stops the thread.
        """
        import threading

        stop = self._stop_precreating = threading.Event()
        made, done, owner, root = self._made, self._precreated, self._owner, str(self.root)

        def run() -> None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC  # never O_TRUNC: the writer may be first
            for rel in rels:
                if stop.is_set():
                    return
                if rel.parent.parts and rel.parent not in made:
                    continue
                try:
                    fd = os.open(os.path.join(root, *rel.parts), flags, 0o600)
                except OSError:
                    return  # the writer meets the same problem on its own, and reports it
                done.add(rel)
                try:
                    if owner is not None:
                        os.fchown(fd, *owner)
                except OSError:
                    return
                finally:
                    os.close(fd)

        self._precreator = threading.Thread(target=run, name="restore-create", daemon=True)
        self._precreator.start()

    def _stop_precreator(self) -> None:
        if self._precreator is not None:
            self._stop_precreating.set()
            self._precreator.join()

    def write_back(self, fd: int, rel: PurePosixPath) -> None:
        """A large file (at `rel`) is still being written: start the writeback of what it has so far, in the
        background thread (before the file's `done`, which closes it there)."""
        if self._syncer is not None and str(rel) not in self.rewritten:
            self._pending.append(self._syncer.submit(start_writeback, fd))

    def done(self, fd: int, rel: PurePosixPath | None = None) -> None:
        """A file (at `rel`) is complete: close it, or (sync) have its writeback started and close it in the
        background."""
        if self._syncer is None or (rel is not None and str(rel) in self.rewritten):
            os.close(fd)
            return
        self._pending.append(self._syncer.submit(_writeback_close, fd))
        while len(self._pending) > self.SYNC_QUEUE:
            self._pending.popleft().result()  # an error is raised here

    def sync_all(self, *, synced: frozenset[str] | set[str] = frozenset()) -> None:
        """Wait for the background work, then fsync every file (but those in `synced`: sync_files did them, and
        nothing wrote them since), then every directory under the root (and the root).

        The files' data is mostly written back by then (started as each file was finished), so the fsyncs
        wait for little more than one journal commit.
        """
        self.drop_unwritten()
        dirs = [dirpath for dirpath, _dirs, _names in os.walk(self.root)]
        pool = self._sync_pool()
        with pool:
            self._fsync_files(pool, lambda path: path not in synced)
            # After the files (map has returned every result): each directory's entries name files already durable.
            for _ in pool.map(_fsync_path, dirs, [os.O_RDONLY | os.O_DIRECTORY] * len(dirs)):
                pass

    def sync_files(self, *, wanted: Callable[[str], bool]) -> set[str]:
        """fsync the files under the root whose path `wanted` accepts, as sync_all does (the restore runs it
        beside the page deltas, for the files they do not change); the paths fsynced."""
        self.drop_unwritten()
        with self._sync_pool() as pool:
            return self._fsync_files(pool, wanted)

    def _sync_pool(self):
        # fsync waits for the device (and releases the GIL): a few at a time, as pgBackRest's processes do.
        from concurrent.futures import ThreadPoolExecutor

        return ThreadPoolExecutor(max_workers=self.SYNC_THREADS, thread_name_prefix="restore-fsync-all")

    def _fsync_files(self, pool, wanted: Callable[[str], bool]) -> set[str]:
        files = [path for dirpath, _dirs, names in os.walk(self.root)
                 for path in (os.path.join(dirpath, name) for name in names) if wanted(path)]
        for _ in pool.map(_fsync_path, files, [os.O_RDONLY | os.O_NOFOLLOW] * len(files)):
            pass
        return set(files)

    def drop_unwritten(self) -> None:
        """Wait for the background work (see close), then remove the precreated files no member wrote."""
        self.close()
        for rel in self._precreated - self._opened:
            os.unlink(os.path.join(self.root, *rel.parts))
        self._precreated.clear()

    def close(self) -> None:
        """Stop the precreating thread, wait for the background writeback (raising the first error) and stop
        that thread too."""
        self._stop_precreator()
        if self._syncer is None:
            return
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pending.clear()
            self._syncer.shutdown(wait=True)  # every descriptor closed, whatever failed
            self._syncer = None


# A file being extracted has its writeback started every this many bytes, not only once complete: the last parts
# of pgbench's 700 MB table were otherwise still to be written when the restore's final fsync came.
WRITEBACK_EVERY = 64 << 20


class StreamExtractor(TarScanner):
    """Extracts a tar stream fed chunk by chunk (`feed`, then `close`) under `extractor.root`, without tarfile.

    Member data is written straight from the chunks it arrives in (no copy per member, no per-read Python
    layer). `select(relpath, member)` (optional) says which regular files to write; the others are skipped
    by count. Every member's path is checked (absolute, escaping: refused) whether selected or not, and a
    link, device or other special member is refused, as by Extractor.write. Directories are always made.

    A part of a tar cut anywhere but inside a header (a full written in parts, docs/FORMAT.md "tar_parts"):
    `start` says where the stream begins, a record {"path", "mtime", "file_offset", "left", "pad"} (inside
    the data or padding of `path`: `left` data bytes, written at `file_offset` when `start["write"]`, then
    `pad` bytes; all zero and "" at a header). `end`, the next part's start record, says where it must end
    (None: at the end-of-archive marker, as a whole tar).

    `patch(relpath, fd, offset)` (optional): a writer for a file's data from `offset` on (None: written as it
    comes), fed its data (`feed(view)`) and then closed (`close(at_end=...)`: its end, or the end of this
    part); the restore's page deltas (apps/backups/delta_patch.py).
    """

    def __init__(self, extractor: "Extractor", select=None, *, start: dict | None = None, end: dict | None = None,
                 patch=None):
        super().__init__()
        self.extractor, self.select, self.end, self.patch = extractor, select, end, patch
        self._fd: int | None = None
        self._writer = None  # patch's writer of the current member
        self._unsynced = 0  # bytes written to the current member since its writeback was last started
        self._current: Member | None = None
        self._continued = False  # the current member began in an earlier part (counted there)
        self._skipped = 0  # its data bytes before this stream began
        if start is not None and (start["left"] or start["pad"]):
            rel = safe_relpath(start["path"])
            member = Member(path=str(rel), type="file", size=start["file_offset"] + start["left"],
                            mtime=start["mtime"])
            self.members.append(member)
            self._data_left, self._pad_left = start["left"], start["pad"]
            if start["left"] and start.get("write", True):
                fd = self.extractor.open_file(rel, 0o600)  # a shared file: made before, never truncated
                try:
                    os.lseek(fd, start["file_offset"], os.SEEK_SET)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd, self._current, self._sink = fd, member, True
                self._continued, self._skipped = True, start["file_offset"]
                if patch is not None:
                    self._writer = patch(str(rel), fd, start["file_offset"])

    def _on_member(self, member: Member) -> bool:
        rel = safe_relpath(member.path)
        if member.type == "dir":
            self.extractor.make_dir(rel, member.mode)
            return False
        if member.type != "file":
            what = "link" if member.type in ("symlink", "hardlink") else "device or special file"
            raise TarError(f"Refusing tar member {member.path!r}: a {what} (tablespaces and links are not "
                           "restored by this tool).")
        if self.select is not None and not self.select(str(rel), member):
            return False
        self._fd = self.extractor.open_file(rel, member.mode)
        self._current, self._unsynced = member, 0
        if self.patch is not None:
            self._writer = self.patch(str(rel), self._fd, 0)
        return True

    def _on_data(self, data: memoryview) -> None:
        self._unsynced += len(data)
        if self._writer is not None:
            self._writer.feed(data)
        else:
            write_all(self._fd, data)
        if self._unsynced >= WRITEBACK_EVERY:  # a large file: its pages go to the disk while the rest is written
            self._unsynced = 0
            self.extractor.write_back(self._fd, PurePosixPath(self._current.path))

    def _on_member_end(self) -> None:
        fd, member, writer = self._fd, self._current, self._writer
        self._fd = self._current = self._writer = None
        try:
            if writer is not None:
                writer.close(at_end=True)
            os.utime(fd, (member.mtime, member.mtime))
        except BaseException:
            os.close(fd)
            raise
        self.extractor.done(fd, PurePosixPath(member.path))
        self.extractor.files += 0 if self._continued else 1  # a continued member: counted where its header was
        self.extractor.bytes += member.size - self._skipped
        self._continued, self._skipped = False, 0

    def close(self) -> None:
        """The stream has ended: refuse one that stops inside a member or before the end-of-archive marker, or
        (a part followed by another, `end`) anywhere but exactly where the next part begins."""
        if self.end is not None:
            self._close_part()
            return
        inside = self._current.path if self._current is not None else None
        self.abort()
        if not self.ended:
            raise TarError("The backup's tar stream ends inside " + (inside or "the archive, before its end marker")
                           + ".")

    def _close_part(self) -> None:
        end = self.end
        inside = self.members[-1].path if (self._data_left or self._pad_left) and self.members else ""
        if (self.ended or self._header or self._collect is not None
                or (inside, self._data_left, self._pad_left) != (end["path"], end["left"], end["pad"])):
            self.abort()
            where = (f"inside {inside}, {self._data_left} data and {self._pad_left} padding bytes before its end"
                     if inside else "at the archive's end marker" if self.ended else "at a member's header")
            raise TarError(f"This part of the backup's tar ends {where}, not where the next part begins "
                           f"({end['path'] or 'at a header'}).")
        if self._fd is not None:  # the member goes on in the next part: what this part holds of it is written
            fd, member, writer = self._fd, self._current, self._writer
            self._fd = self._current = self._writer = None
            try:
                if writer is not None:
                    writer.close(at_end=False)
                os.utime(fd, (member.mtime, member.mtime))  # after our writes; the other writer's come after its own
            except BaseException:
                os.close(fd)
                raise
            self.extractor.done(fd, PurePosixPath(member.path))
            self.extractor.files += 0 if self._continued else 1
            self.extractor.bytes += member.size - self._data_left - self._skipped

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._current = self._writer = None


def _fsync_path(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = None


def _writeback_close(fd: int) -> None:
    """Start writing the file's dirty pages to disk without waiting (start_writeback), then close it."""
    try:
        start_writeback(fd)
    finally:
        os.close(fd)


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Start writing the dirty pages of a file's range (0: to its end) to disk without waiting (Linux
    sync_file_range). Only a head start for the fsync that sync_all does later: where the call is missing or
    fails, nothing is lost."""
    global _sync_file_range
    if _sync_file_range is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        func = getattr(libc, "sync_file_range", None)
        if func is not None:
            func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
            func.restype = ctypes.c_int
        _sync_file_range = func or False
    if _sync_file_range:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def is_regular_file(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)

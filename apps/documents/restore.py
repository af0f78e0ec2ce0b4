"""Restoring a version (whole, a subtree or one file) into a directory, and the safety rules it keeps.

Manifest entries are untrusted: a path must be relative and plain (manifest.check_path), every directory on
the way must be a real directory inside the target (never a link, whoever made it), files are created with
O_EXCL|O_NOFOLLOW and count as restored only once their SHA-256 (computed over the bytes written, whatever the
chunks and packs said) matches the manifest (a file that does not is removed), and an existing file is
replaced only with `overwrite`. Links are made last, so no file is ever written through one; a link itself may
point anywhere, as it did in the source.

A killed restore never leaves a partial file under a real name. Into a directory that does not exist yet, the
whole tree is written into a private staging directory beside it, under the files' own names, and renamed into
place at the end (staging.py): the destination is then absent or complete. Into an existing directory each file
is written to a temporary name and renamed once checked.
"""
import hashlib
import os
import stat
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from apps.core.durable import write_all
from apps.core.errors import UserError
from apps.documents import forked, gcpause, heap, manifest, staging
from apps.documents.chunks import ChunkError, ChunkStore
from apps.documents.manifest import UnsafePath, check_path
from apps.documents.models import DocumentVersion
from apps.documents.renames import rename_noreplace
from apps.jobs.progress import JobContext, note
from apps.pipeline.keys import configured_keyring

TMP_MARK = ".restore-"
WRITERS = 4  # writer threads of a restore in one process
# A large restore from a local location: files split over this many processes (at most one per CPU), each
# writing with one thread (its packs decoded ahead by the store's thread): fewer GIL hand-offs than threads.
PROCESSES, WRITERS_PER_PROCESS = 2, 1
PARALLEL_MIN_FILES, PARALLEL_MIN_BYTES = 2000, 256 << 20  # smaller restores stay in one process


@dataclass
class RestoreResult:
    files: int = 0
    bytes: int = 0
    dirs: int = 0
    links: int = 0
    skipped_existing: list[str] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    recovered: list[dict] = field(default_factory=list)  # packs read from a replica: [{pack, from}]

    def as_dict(self) -> dict:
        return {"files": self.files, "bytes": self.bytes, "dirs": self.dirs, "links": self.links,
                "recovered_from_replicas": self.recovered[:100],
                "skipped_existing": self.skipped_existing[:100], "refused": self.refused[:100],
                "failed": self.failed[:100]}

    @property
    def ok(self) -> bool:
        """Existing files kept (no `overwrite`) are reported, not a failure."""
        return not (self.refused or self.failed)


class _Tree:
    """The target directory: makes and checks the directories on a path, never through a link."""

    def __init__(self, root: str):
        self.root = root
        self.checked: set[str] = set()
        self.made: set[str] = set()  # directories this restore created: nothing else can be in them

    def parent_of(self, rel: str) -> tuple[str, str]:
        """(directory, parent's relative path) of `rel`, every directory on the way made or checked."""
        parent_rel = rel.rpartition("/")[0]
        if parent_rel and parent_rel not in self.checked:
            done = ""
            for part in parent_rel.split("/"):
                done = f"{done}/{part}" if done else part
                if done not in self.checked:
                    self.ensure_dir(done)
        return (os.path.join(self.root, parent_rel) if parent_rel else self.root), parent_rel

    def ensure_dir(self, rel: str) -> None:
        path = os.path.join(self.root, rel)
        try:
            os.mkdir(path, 0o755)  # a directory in the manifest gets its own mode at the end
            self.made.add(rel)
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePath(f"Refusing {rel!r}: it exists in the target and is not a directory (a link?).")
        self.checked.add(rel)


def write_entries(*, entries: list[dict], root: Path, store: ChunkStore, overwrite: bool,
                  ctx: JobContext | None = None, fresh: bool = False) -> RestoreResult:
    """Write manifest entries under `root` (which must exist). Bad entries are refused and reported.
    `fresh`: root is an empty directory private to this restore (a staging directory): files are written
    under their own names, without a temporary name and rename each."""
    result = RestoreResult()
    tree = _Tree(str(root))
    if fresh:
        tree.made.add("")
    files, dirs, links = [], [], []
    for e in entries:
        try:
            rel = check_path(e.get("path") if isinstance(e, dict) else None)
        except UnsafePath as exc:
            result.refused.append({"path": str(e.get("path") if isinstance(e, dict) else e), "problem": str(exc)})
            continue
        kind = e.get("type")
        if kind == "file" and isinstance(e.get("chunks"), list):
            files.append(e)
        elif kind == "dir":
            dirs.append(e)
        elif kind == "symlink" and isinstance(e.get("target"), str):
            links.append(e)
        else:
            result.refused.append({"path": rel, "problem": f"unknown entry type {kind!r}"})
    for e in dirs:
        try:
            tree.parent_of(e["path"])
            tree.ensure_dir(e["path"])
            result.dirs += 1
        except UnsafePath as exc:
            result.refused.append({"path": e["path"], "problem": str(exc)})
    # Directories first, here (one thread), so the writers below only read the tree's sets.
    placed = []
    for e in files:
        try:
            placed.append((e, *tree.parent_of(e["path"])))
        except UnsafePath as exc:
            result.refused.append({"path": e["path"], "problem": str(exc)})
    store.locate(c for e in files for c in e["chunks"])
    store.plan(store.pack_order(c for e in files for c in e["chunks"]))
    token = uuid.uuid4().hex[:8]
    umask = _umask()

    jobs = list(enumerate(placed))
    report = (lambda done: ctx.progress(done)) if ctx is not None else None
    processes = _processes(store, len(jobs), sum(_size(e) for e, _, _ in placed))
    if processes > 1:
        _write_in_processes(jobs, processes, tree=tree, store=store, overwrite=overwrite, token=token,
                            umask=umask, result=result, report=report, fresh=fresh)
    else:
        _write_files(jobs, tree=tree, store=store, overwrite=overwrite, token=token, umask=umask, result=result,
                     report=(lambda n: report(result.bytes)) if report else None, fresh=fresh)
    for e in links:
        try:
            parent, _ = tree.parent_of(e["path"])
            final = os.path.join(parent, e["path"].rpartition("/")[2])
            if os.path.lexists(final):
                if not overwrite or (os.path.isdir(final) and not os.path.islink(final)):
                    result.skipped_existing.append(e["path"])
                    continue
                os.unlink(final)
            os.symlink(e["target"], final)
            result.links += 1
        except UnsafePath as exc:
            result.refused.append({"path": e["path"], "problem": str(exc)})
        except OSError as exc:
            result.failed.append({"path": e["path"], "problem": exc.strerror or str(exc)})
    for e in reversed(dirs):  # modes and times of directories last: writing into them changed their mtime
        if e["path"] in tree.checked and isinstance(e.get("mode"), int):
            path = os.path.join(tree.root, e["path"])
            try:
                os.chmod(path, e["mode"] & 0o7777, follow_symlinks=False)
                if isinstance(e.get("mtime_ns"), int):
                    os.utime(path, ns=(e["mtime_ns"], e["mtime_ns"]), follow_symlinks=False)
            except OSError:
                pass
    note(ctx, f"restored {result.files} files ({result.bytes} bytes), {result.dirs} directories, "
              f"{result.links} links; {len(result.refused)} refused, {len(result.failed)} failed, "
              f"{len(result.skipped_existing)} existing files kept")
    return result


def _write_files(jobs: list[tuple[int, tuple]], *, tree: _Tree, store: ChunkStore, overwrite: bool, token: str,
                 umask: int, result: RestoreResult, report=None, threads: int = WRITERS, fresh: bool = False) -> None:
    """Write these files (index, (entry, parent directory, its relative path)) with `threads` writer threads,
    counting into `result`; report(bytes) every 1000 files."""

    def write(job: tuple[int, tuple]) -> int | None:
        """Bytes written, or None (kept, refused or failed: recorded in `result`; list.append is atomic)."""
        i, (e, parent, parent_rel) = job
        try:
            return _write_file(e, parent=parent, fresh_dir=parent_rel in tree.made, umask=umask,
                               tmp_name=f"{TMP_MARK}{token}-{i}", store=store, overwrite=overwrite, result=result,
                               direct=fresh)
        except UnsafePath as exc:
            result.refused.append({"path": e["path"], "problem": str(exc)})
        except (ChunkError, OSError) as exc:
            result.failed.append({"path": e["path"], "problem": str(exc)})
        return None

    # Creating files is mostly file-system work outside the GIL: a few writers keep the disk busy.
    reported = 0
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="docs-restore") as pool:
        sizes = map(write, jobs) if threads == 1 else pool.map(write, jobs)
        for n, size in enumerate(sizes, 1):
            if size is not None:
                result.files += 1
                result.bytes += size
            if report is not None and n % 1000 == 0:
                report(result.bytes - reported)
                reported = result.bytes
    if report is not None:
        report(result.bytes - reported)


def _size(e: dict) -> int:
    size = e.get("size")
    return size if isinstance(size, int) and size > 0 else 0


def _processes(store: ChunkStore, files: int, size: int) -> int:
    """How many processes write the files: one per CPU for a restore large enough to gain from it, from
    local locations only (a child opens its own storage connections; cloud SDKs are left out of forks)."""
    if not forked.available() or files < PARALLEL_MIN_FILES and size < PARALLEL_MIN_BYTES:
        return 1
    if any(b.location.kind != "local" for b in [store.backend, *store.fallbacks]):
        return 1
    return max(1, min(PROCESSES, os.cpu_count() or 1, files))


def _split(jobs: list, parts: int) -> list[list]:
    """Consecutive runs of about equal bytes (files are in manifest order, so each run needs its own packs)."""
    sizes = [_size(e) + 4096 for _, (e, _, _) in jobs]  # 4096: the cost of a file itself
    total, out, cur, acc = sum(sizes), [], [], 0
    for job, size in zip(jobs, sizes):
        cur.append(job)
        acc += size
        if acc >= total * (len(out) + 1) / parts and len(out) < parts - 1:
            out.append(cur)
            cur = []
    out.append(cur)
    return [p for p in out if p]


def _write_in_processes(jobs, processes: int, *, tree: _Tree, store: ChunkStore, overwrite: bool, token: str,
                        umask: int, result: RestoreResult, report, fresh: bool = False) -> None:
    """The files split over forked children (forked.py): each decodes the packs its files need and writes
    them, exactly as one process would (same names, checks and renames). A child that dies without its result
    has all its files counted failed, whatever it wrote (the restore is then not ok), and what it may have left
    removed: its temporary names, or, in a fresh directory, the files themselves (one may be partial)."""
    parts = _split(jobs, processes)

    def work(part, progress) -> dict:
        store.reopen_in_child()
        store.plan(store.pack_order(c for _, (e, _, _) in part for c in e["chunks"]))
        mine = RestoreResult()
        try:
            _write_files(part, tree=tree, store=store, overwrite=overwrite, token=token, umask=umask, result=mine,
                         report=progress, threads=WRITERS_PER_PROCESS, fresh=fresh)
        finally:
            store.close()
        return {"files": mine.files, "bytes": mine.bytes, "skipped_existing": mine.skipped_existing,
                "refused": mine.refused, "failed": mine.failed, "recovered": store.recovered}

    for part, got in zip(parts, forked.run(parts, work, on_progress=report)):
        if got is None:
            result.failed.extend({"path": e["path"], "problem": "the restore process writing it died"}
                                 for _, (e, _, _) in part)
            for i, (e, parent, _) in part:
                for name in ([e["path"].rpartition("/")[2]] if fresh else []) + [f"{TMP_MARK}{token}-{i}"]:
                    try:
                        os.unlink(os.path.join(parent, name))
                    except OSError:
                        pass
            continue
        result.files += got["files"]
        result.bytes += got["bytes"]
        result.skipped_existing += got["skipped_existing"]
        result.refused += got["refused"]
        result.failed += got["failed"]
        store.recovered += [tuple(r) for r in got["recovered"]]


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it: another thread could create a file
    meanwhile with the wrong one)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_file(e: dict, *, parent: str, fresh_dir: bool, tmp_name: str, store: ChunkStore, overwrite: bool,
                result: RestoreResult, umask: int, direct: bool = False) -> int | None:
    """The file's bytes written to a temporary name, its SHA-256 and size checked against the manifest, its
    mode and time set, then renamed to its name: a killed restore never leaves a partial file under a real
    name. `direct` (a staging directory, renamed into place only once complete): written under its own name,
    removed if its bytes do not match. Syscalls kept few: the file is created with its final mode when the
    umask leaves that mode whole (no fchmod), written with one write per chunk, its time set with futimens."""
    rel = e["path"]
    final = os.path.join(parent, rel.rpartition("/")[2])
    # In a directory this restore made nothing else can be; elsewhere look first, so a kept file is not read.
    if not fresh_dir and not overwrite and os.path.lexists(final):
        result.skipped_existing.append(rel)
        return None
    mode = e["mode"] & 0o7777 if isinstance(e.get("mode"), int) else None
    # Created with its final mode (the creator may write whatever the mode) unless the umask or special bits
    # (setuid, setgid, sticky: not through open's mode) need an fchmod after.
    whole_mode = mode is not None and mode <= 0o777 and not mode & umask
    tmp = os.path.join(parent, tmp_name)
    if direct:
        try:
            fd = os.open(final, _CREATE, mode if whole_mode else 0o600)
            tmp = final
        except FileExistsError:  # a name the manifest has twice: as into any directory
            direct = False
    if not direct:
        fd = os.open(tmp, _CREATE, mode if whole_mode else 0o600)
    try:
        try:
            digest = hashlib.sha256()
            size = 0
            for sha in e["chunks"]:
                data = store.view(sha)  # unchecked: the whole file is, below, before it gets its name
                digest.update(data)
                write_all(fd, data)
                size += len(data)
            if size != e.get("size") or digest.hexdigest() != e.get("sha256"):
                raise ChunkError(f"restored bytes do not match the manifest's SHA-256 / size for {rel}")
            if mode is not None and not whole_mode:
                os.fchmod(fd, mode)
            if isinstance(e.get("mtime_ns"), int):
                os.utime(fd, ns=(e["mtime_ns"], e["mtime_ns"]))
        finally:
            os.close(fd)
        if direct:
            return size
        if overwrite:
            if os.path.isdir(final) and not os.path.islink(final):
                raise UnsafePath(f"Refusing {rel!r}: a directory of that name exists in the target.")
            os.replace(tmp, final)
        else:
            try:
                rename_noreplace(tmp, final)
            except FileExistsError:
                os.unlink(tmp)
                result.skipped_existing.append(rel)
                return None
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return size


def restore_version(*, version: DocumentVersion, to: str, path: str | None = None, overwrite: bool = False,
                    ctx: JobContext | None = None) -> RestoreResult:
    """Restore `version` (or the file or subtree `path` of it) under the directory `to`."""
    with gcpause.paused(), heap.kept():
        return _restore_version(version=version, to=to, path=path, overwrite=overwrite, ctx=ctx)


def _restore_version(*, version: DocumentVersion, to: str, path: str | None, overwrite: bool,
                     ctx: JobContext | None) -> RestoreResult:
    from apps.documents.replication import load_manifest

    keyring = configured_keyring()
    body, locations = load_manifest(version, keyring=keyring, ctx=ctx)  # its own location, then replicas
    entries = manifest.select(body["entries"], manifest.normalize_request_path(path))
    dest = os.path.abspath(to)
    stage = None
    if not os.path.lexists(dest):  # a new directory: staged whole, renamed into place once complete
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create the restore directory {to}: {exc.strerror}.") from None
        stage = staging.Staging.create(dest, umask=_umask())
    note(ctx, f"restoring {len(entries)} entries of version {version.pk} into {to}")
    if stage is not None:
        try:
            result, store = _write_version(version, entries, locations, keyring, root=Path(stage.path),
                                           overwrite=overwrite, ctx=ctx, fresh=True)
            stage.finish()
        except staging.DestinationAppeared:
            stage.discard()  # made meanwhile by someone else: restored into as any existing directory
            note(ctx, f"{to} appeared during the restore: restoring into it file by file")
            stage = None
        except BaseException:
            stage.discard()
            raise
    if stage is None:
        root = Path(to)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create the restore directory {to}: {exc.strerror}.") from None
        if not root.is_dir():
            raise UserError(f"{to} is not a directory.")
        result, store = _write_version(version, entries, locations, keyring, root=root.resolve(),
                                       overwrite=overwrite, ctx=ctx)
    result.recovered = [{"pack": key, "from": name} for key, name in store.recovered]
    if result.recovered:
        note(ctx, f"{len(result.recovered)} packs missing or damaged in {version.storage_location.name} were read "
                  "from a replica")
    return result


def _write_version(version, entries, locations, keyring, *, root: Path, overwrite: bool, ctx, fresh: bool = False):
    with ChunkStore(location=version.storage_location, keyring=keyring, fallbacks=locations[1:],
                    whole_files_checked=True) as store:
        result = write_entries(entries=entries, root=root, store=store, overwrite=overwrite, ctx=ctx, fresh=fresh)
    return result, store

"""Walking a source's tree: which entries a version holds, by the source's include/exclude globs.

A pattern without "/" matches an entry's name; one with "/" matches its whole relative path (POSIX, `*`
crossing "/"). An excluded directory is not descended into. Include patterns select files (directories are
always walked); no include patterns means every file. Symbolic links are recorded as links unless the
source follows them; a directory reached twice through links is walked once.
"""
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from operator import attrgetter


@dataclass
class Entry:
    path: str  # relative, POSIX
    type: str  # file | dir | symlink
    st: os.stat_result | None = None
    target: str = ""  # of a symlink
    obj: object = None  # of an object-store source: its ObjectInfo (key, size, modified, etag)


@dataclass
class Skipped:
    path: str
    problem: str


_name = attrgetter("name")


def _matches(patterns: list[str], rel: str, name: str) -> bool:
    if not patterns:  # the usual case, on every entry of the tree
        return False
    return any(fnmatchcase(rel if "/" in p else name, p.strip("/")) for p in patterns)


def walk(root: str, *, include: list[str], exclude: list[str], follow_symlinks: bool) -> Iterator[Entry | Skipped]:
    """Entries under `root` in a stable order (sorted names, depth first); what cannot be read is Skipped."""
    seen_dirs: set[tuple[int, int]] = set()
    try:
        top = os.stat(root)
    except OSError as exc:
        raise FileNotFoundError(f"The source directory {root} cannot be read: {exc.strerror}.") from None
    if not stat.S_ISDIR(top.st_mode):
        raise NotADirectoryError(f"The source path {root} is not a directory.")
    seen_dirs.add((top.st_dev, top.st_ino))
    stack: list[tuple[str, str]] = [(root, "")]
    while stack:
        abs_dir, rel_dir = stack.pop()
        try:
            with os.scandir(abs_dir) as it:
                items = sorted(it, key=_name)
        except OSError as exc:
            yield Skipped(rel_dir or ".", f"directory not readable: {exc.strerror}")
            continue
        subdirs = []
        for item in items:
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            if exclude and _matches(exclude, rel, item.name):
                continue
            try:
                st = item.stat(follow_symlinks=follow_symlinks)
            except FileNotFoundError:
                if follow_symlinks and item.is_symlink():
                    yield Skipped(rel, "broken symbolic link")
                else:
                    yield Skipped(rel, "vanished before it was read")
                continue
            except OSError as exc:
                yield Skipped(rel, f"not readable: {exc.strerror}")
                continue
            if stat.S_ISLNK(st.st_mode):
                try:
                    yield Entry(rel, "symlink", st, target=os.readlink(item.path))
                except OSError as exc:
                    yield Skipped(rel, f"link not readable: {exc.strerror}")
            elif stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen_dirs:
                    yield Skipped(rel, "directory already backed up through another path (link loop)")
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                subdirs.append((item.path, rel, st))
            elif stat.S_ISREG(st.st_mode):
                if not include or _matches(include, rel, item.name):
                    yield Entry(rel, "file", st)
            else:
                yield Skipped(rel, "not a regular file, directory or link")
        # Depth first in name order: push in reverse so the first name comes out first.
        for abs_sub, rel_sub, st in reversed(subdirs):
            stack.append((abs_sub, rel_sub))
        for abs_sub, rel_sub, st in subdirs:
            yield Entry(rel_sub, "dir", st)


def _mtime_ns(modified) -> int:
    return int(modified.timestamp() * 1_000_000) * 1000 if modified is not None else 0


def object_mtime_ns(info) -> int:
    """An object's modification time in nanoseconds (0 when the store did not say)."""
    return _mtime_ns(info.modified)


def walk_objects(backend, prefix: str, *, include: list[str], exclude: list[str]) -> Iterator[Entry | Skipped]:
    """The objects under `prefix` of a storage backend as file entries, paths relative to the prefix, in key
    order; the globs apply to those paths as to a directory's (an excluded "directory" skips every key under
    it). Keys that are not plain relative paths (empty parts, '.', '..') are Skipped, never restored."""
    from apps.documents.manifest import UnsafePath, check_path

    prefix = prefix.strip("/")
    base = f"{prefix}/" if prefix else ""
    for info in sorted(backend.list(base), key=lambda i: i.key):
        if not info.key.startswith(base):
            continue
        rel = info.key[len(base):]
        if not rel or rel.endswith("/"):
            continue  # "folder" markers some tools write
        try:
            check_path(rel)
        except UnsafePath:
            yield Skipped(rel, "object key is not a plain relative path: not backed up")
            continue
        parts = rel.split("/")
        if exclude and any(_matches(exclude, "/".join(parts[:i + 1]), parts[i]) for i in range(len(parts))):
            continue
        if include and not _matches(include, rel, parts[-1]):
            continue
        yield Entry(rel, "file", None, obj=info)

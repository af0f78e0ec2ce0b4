"""A restore into a directory that does not exist yet is written into a staging directory beside it (same file
system) and renamed into place at the end: the destination is absent or complete, whenever the restore is
killed, with no temporary name and rename per file.

The staging directory is `.NAME.restore-XXXXXXXX` in the destination's parent, made mode 0700 (nobody else can
put anything in it, a link included) and flock'ed for as long as its restore runs (forked children share the
lock; they die with their parent). The next restore into the same destination removes a staging directory whose
lock it can take (its restore is dead) and leaves alone one still locked (a restore running now) or owned by
another user. Making one, and removing the dead ones, happen under a lock on the parent directory, so a staging
directory is never seen between its mkdir and its lock.

No fsync: a killed process loses nothing the kernel has (the page cache and the rename are the same for the
next process). Complete-or-absent across a power cut would need every file flushed before the rename; neither
the per-file path nor restic does that.
"""
import errno
import fcntl
import os
import re
import shutil
import stat
import uuid

from apps.documents.renames import rename_dir_noreplace

MARK = ".restore-"


class DestinationAppeared(Exception):
    """The destination was made by someone else while the restore ran: the staged tree was not moved in."""


def _pattern(name: str) -> re.Pattern:
    return re.compile(re.escape(f".{name}{MARK}") + r"[0-9a-f]{8}")


class Staging:
    """A private directory to restore into, renamed to `dest` by finish(); `discard()` removes it."""

    def __init__(self, dest: str, path: str, fd: int, mode: int):
        self.dest, self.path, self._fd = dest, path, fd
        self.mode = mode  # the destination's at the end (the staging directory is 0700 meanwhile)

    @classmethod
    def create(cls, dest: str, *, umask: int) -> "Staging | None":
        """A staging directory for `dest` (an absolute path that does not exist; its parent does), after
        removing the dead ones of earlier restores into it; None when the file system cannot lock (then the
        caller restores file by file)."""
        parent, name = os.path.split(dest)
        try:
            pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(pfd, fcntl.LOCK_EX)
            _remove_dead(parent, name)
            path = os.path.join(parent, f".{name}{MARK}{uuid.uuid4().hex[:8]}")
            os.mkdir(path, 0o700)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                os.rmdir(path)
                return None
        except OSError:
            return None
        finally:
            os.close(pfd)  # the parent's lock goes with it
        return cls(dest, path, fd, 0o777 & ~umask)  # the mode mkdir(dest) would have given

    def finish(self) -> None:
        """The staged tree becomes `dest` (one rename); DestinationAppeared if `dest` exists now."""
        os.fchmod(self._fd, self.mode)
        try:
            rename_dir_noreplace(self.path, self.dest)
        except FileExistsError:
            raise DestinationAppeared(self.dest) from None
        self._close()

    def discard(self) -> None:
        _remove(self.path)
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _remove_dead(parent: str, name: str) -> None:
    """Remove the staging directories of `dest` whose restore is no longer running (killed: never renamed)."""
    pattern = _pattern(name)
    try:
        names = [n for n in os.listdir(parent) if pattern.fullmatch(n)]
    except OSError:
        return
    for n in names:
        path = os.path.join(parent, n)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # not a directory (not ours), or gone
        try:
            if os.fstat(fd).st_uid != os.geteuid():
                continue  # not made by a restore of ours (another user's, whatever its name)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # locked: its restore is running
        finally:
            os.close(fd)
        _remove(path)


def _remove(path: str) -> None:
    """Remove a staging tree (never following a link); directories a restore made read-only are opened up."""
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM):
            return
    for top, dirs, _ in os.walk(path):
        for d in [top, *(os.path.join(top, d) for d in dirs)]:
            try:
                if stat.S_ISDIR(os.lstat(d).st_mode):
                    os.chmod(d, 0o700)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)

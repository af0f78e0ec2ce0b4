"""Renaming without replacing: renameat2(RENAME_NOREPLACE), with link + unlink where the kernel or the file
system lacks it. Either way an existing name is never replaced."""
import ctypes
import errno
import os

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
_supported = _renameat2 is not None


def _noreplace(src: str, dst: str) -> bool:
    """renameat2(RENAME_NOREPLACE): True when done, False when the kernel or file system lacks it; raises
    FileExistsError if dst exists, OSError for any other failure."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), dst)
    raise OSError(err, os.strerror(err), dst)


def rename_noreplace(src: str, dst: str) -> None:
    """Move src to dst; FileExistsError if dst exists (src is then left in place)."""
    global _supported
    if _supported:
        if _noreplace(src, dst):
            return
        _supported = False
    os.link(src, dst, follow_symlinks=False)
    os.unlink(src)


def rename_dir_noreplace(src: str, dst: str) -> None:
    """Move the directory src to dst; FileExistsError if dst exists. Without renameat2 (an old kernel or a
    file system without RENAME_NOREPLACE) a plain rename after a look: os.rename could then, in the moment
    between the two, replace an empty directory made meanwhile (never one with anything in it)."""
    if _noreplace(src, dst):
        return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst)

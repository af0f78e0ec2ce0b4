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


def rename_noreplace(src: str, dst: str) -> None:
    """Move src to dst; FileExistsError if dst exists (src is then left in place)."""
    global _supported
    if _supported:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), dst) if err != errno.EEXIST else FileExistsError(
                err, os.strerror(err), dst)
        _supported = False
    os.link(src, dst, follow_symlinks=False)
    os.unlink(src)

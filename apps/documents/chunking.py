"""Content-defined chunking of a file (FastCDC, about 1 MiB chunks as restic's), read a window at a time.

Cut points depend on the content only, so an insertion in a large file changes the chunks around it, not
every chunk after it. Memory per file is bounded by the window whatever the file's size.
"""
import hashlib
from dataclasses import dataclass, field

from pyfastcdc import FastCDC

MIN_CHUNK = 512 << 10
AVG_CHUNK = 512 << 10  # pyfastcdc's average is avg + min: about 1 MiB
MAX_CHUNK = 8 << 20
WINDOW = 16 << 20
_CDC = FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)


@dataclass
class ChunkedFile:
    size: int = 0
    sha256: str = ""
    chunks: list[str] = field(default_factory=list)


def chunks_of(fh, consume, size_hint: int | None = None) -> ChunkedFile:
    """Read the open binary file `fh` to its end, calling consume(sha256_hex, data) for every chunk in order.

    `size_hint` (the file's size when opened): the first read asks for that many bytes plus one rather than
    a whole window, so a small file does not cost a 16 MiB allocation (an mmap, page faults, an mremap); a
    file that grew since is read on to a whole window, as without the hint."""
    out = ChunkedFile()
    if size_hint is not None and size_hint + 1 < WINDOW:
        data = fh.read(size_hint + 1)
        if len(data) == size_hint + 1:  # it grew: the rest of the window
            data += fh.read(WINDOW - len(data))
    else:
        data = fh.read(WINDOW)
    if len(data) < WINDOW:  # the usual case: the whole file in one read, one pass over its chunks
        if len(data) <= MIN_CHUNK:
            digest = hashlib.sha256(data).hexdigest()
            if data:
                consume(digest, data)
                out.chunks.append(digest)
            out.size, out.sha256 = len(data), digest
            return out
        whole = hashlib.sha256(data)
        view = memoryview(data)
        for c in _CDC.cut_buf(data):
            piece = view[c.offset:c.offset + c.length]
            digest = hashlib.sha256(piece).hexdigest()
            consume(digest, piece)
            out.chunks.append(digest)
        out.size, out.sha256 = len(data), whole.hexdigest()
        return out
    whole = hashlib.sha256()
    buf = data
    while True:
        more = fh.read(WINDOW)
        last = not more
        view = memoryview(buf)
        cuts = list(_CDC.cut_buf(buf))
        # The last cut of a window may be the window's end rather than a content boundary: carry it over.
        keep = cuts if last else cuts[:-1]
        for c in keep:
            piece = view[c.offset:c.offset + c.length]
            digest = hashlib.sha256(piece).hexdigest()
            whole.update(piece)
            consume(digest, piece)
            out.chunks.append(digest)
            out.size += c.length
        if last:
            break
        rest = bytes(view[cuts[-1].offset:]) if cuts else b""
        del view
        buf = rest + more
    out.sha256 = whole.hexdigest()
    return out

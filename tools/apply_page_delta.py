#!/usr/bin/env python3
"""Apply one incremental's page deltas (`pages.delta`) to a data directory, without the backup application.

    python3 tools/decrypt_artifact.py "$INC/pages.delta.zst.aead" --manifest "$INC/manifest.json" \\
      | python3 tools/apply_page_delta.py --pgdata /restore/data --index files.json --link INC_ID

The format is specified in docs/FORMAT.md 7.1. Only the Python standard library is needed. `--index` is the
NEWEST backup's decrypted files.json: a record is applied to a file only when that index lists the link in
the file's "deltas" (others are skipped). Run it once per link holding deltas, in chain order, after every
tar was extracted. Every file's size is checked before, and at its end record the crc32c (crc32 in the older
BSPD2) of the pages its records changed (as found) and of the pages made; a mismatch, a missing file or a
missing record ends the run with status 1 and one line on stderr (the directory is then not usable: start
again from the tars). The crc32c is computed by the `google_crc32c` package when it is installed (it comes
with the backup application), else in pure Python: correct, but about 20 s per 100 MB of changed pages.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import zlib

PAGE = 8192


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return table


_TABLE = _crc32c_table()


def _crc32c_python(crc: int, data: bytes) -> int:
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:
    from google_crc32c import extend as _crc32c
except ImportError:  # the standard library has no crc32c
    _crc32c = _crc32c_python

CRCS = {b"BSPD3\n": _crc32c, b"BSPD2\n": lambda crc, data: zlib.crc32(data, crc)}


class Failure(Exception):
    pass


def read(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise Failure("the page-delta stream ends early")
    return data


def apply(stream, root: str, wanted: set[str]) -> int:
    crc = CRCS.get(read(stream, 6))
    if crc is None:
        raise Failure("not a page-delta stream")
    if crc is _crc32c_python:
        print("apply_page_delta: google_crc32c is not installed; checking crc32c in pure Python (slow)",
              file=sys.stderr)
    files = pages = applied = 0
    fd, path = None, None
    tag = read(stream, 1)
    try:
        while tag != b"Z":
            if tag == b"F":
                (length,) = struct.unpack("<H", read(stream, 2))
                path = read(stream, length).decode()
                parent_size, new_size = struct.unpack("<QQ", read(stream, 16))
                files += 1
                fd = None
                if path in wanted:
                    wanted.discard(path)
                    if path.startswith("/") or ".." in path.split("/"):
                        raise Failure(f"refusing the path {path!r}")
                    try:
                        fd = os.open(os.path.join(root, path), os.O_RDWR | os.O_NOFOLLOW)
                    except FileNotFoundError:
                        raise Failure(f"{path} is not in {root}") from None
                    if os.fstat(fd).st_size != parent_size:
                        raise Failure(f"{path} is {os.fstat(fd).st_size} bytes, its delta is against {parent_size}")
                tag = read(stream, 1)
                number, old_crc, new_crc = -1, 0, 0
                while tag == b"P":
                    skipped, count, length = struct.unpack("<IHH", read(stream, 8))
                    header = struct.unpack(f"<{2 * count}H", read(stream, 4 * count))
                    data = read(stream, length)
                    number += skipped + 1
                    pages += 1
                    tag = read(stream, 1)
                    if fd is None:
                        continue
                    old = os.pread(fd, PAGE, number * PAGE).ljust(PAGE, b"\0")
                    if sum(header) > PAGE or sum(header[1::2]) != length:
                        raise Failure(f"the runs of page {number} of {path} do not fit the page or their record")
                    new, at, used = bytearray(old), 0, 0
                    for kept, size in zip(header[0::2], header[1::2]):  # bytes kept as they are, then new bytes
                        at += kept
                        new[at:at + size] = data[used:used + size]
                        at, used = at + size, used + size
                    old_crc, new_crc = crc(old_crc, old), crc(new_crc, bytes(new))
                    os.pwrite(fd, new, number * PAGE)
                    applied += 1
                if tag != b"E":
                    raise Failure(f"the records of {path} end without their end record")
                want_old, want_new = struct.unpack("<II", read(stream, 8))
                tag = read(stream, 1)
                if fd is not None:
                    if old_crc != want_old:
                        raise Failure(f"{path} is not the content its delta was made against")
                    if new_crc != want_new:
                        raise Failure(f"{path}: the delta does not give the pages it recorded")
                    os.ftruncate(fd, new_size)
                    os.fsync(fd)
                    os.close(fd)
                    fd = None
            else:
                raise Failure(f"unknown record {tag!r}")
        if struct.unpack("<QQ", read(stream, 16)) != (files, pages):
            raise Failure("the end record's counts do not match the records")
    finally:
        if fd is not None:
            os.close(fd)
    if wanted:
        raise Failure(f"no delta for {len(wanted)} files the index relies on (e.g. {min(wanted)})")
    return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pgdata", required=True, help="the data directory the tars were extracted into")
    parser.add_argument("--index", required=True, help="the newest backup's files.json (decrypted)")
    parser.add_argument("--link", required=True, help="the id of the backup this pages.delta belongs to")
    parser.add_argument("delta", nargs="?", default="-", help="the decrypted pages.delta (default: stdin)")
    args = parser.parse_args(argv)
    with open(args.index, "rb") as fh:
        index = json.load(fh)
    wanted = {e["path"] for e in index.get("files", []) if args.link in (e.get("deltas") or ())}
    try:
        if args.delta == "-":
            applied = apply(sys.stdin.buffer, args.pgdata, wanted)
        else:
            with open(args.delta, "rb") as stream:
                applied = apply(stream, args.pgdata, wanted)
    except Failure as exc:
        print(f"apply_page_delta: {exc}", file=sys.stderr)
        return 1
    print(f"apply_page_delta: {applied} pages applied", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

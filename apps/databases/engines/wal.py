"""Reading PostgreSQL WAL files: the long page header of a segment, and its last commit time (pg_waldump).

Both run in wal_push, as PostgreSQL's archive_command, so they stay cheap: 40 bytes of header, and one
pg_waldump pass limited to transaction records, its output read line by line (never held whole).
"""
import os
import re
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# XLogLongPageHeaderData: magic, info, tli, pageaddr, rem_len, (pad), sysid, seg_size, xlog_blcksz.
_LONG_HEADER = struct.Struct("<HHIQI4xQII")
XLP_LONG_HEADER = 0x0002
# XLOG_PAGE_MAGIC of each major version (access/xlog_internal.h): which pg_waldump can read a file.
PAGE_MAGIC = {0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17}
# "desc: COMMIT 2026-11-25 21:50:01.651033 UTC; ..." and COMMIT_PREPARED / ABORT / ABORT_PREPARED ("N: " first).
_XACT_TIME = re.compile(
    r"desc: (?:COMMIT|ABORT)(?:_PREPARED)? (?:\d+: )?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC\b"
)


# "lsn: 0/03000148, prev 0/03000110, desc: RESTORE_POINT before-migration" (rmgr XLOG).
_RESTORE_POINT = re.compile(r"lsn: ([0-9A-F]+/[0-9A-F]+),.*desc: RESTORE_POINT (.*)$")


class WalFileError(Exception):
    """The file is not the WAL segment its name says."""


@dataclass(frozen=True)
class SegmentHeader:
    magic: int
    timeline: int
    page_address: int
    system_identifier: int
    segment_size: int
    block_size: int

    @property
    def major_version(self) -> int | None:
        return PAGE_MAGIC.get(self.magic)


def read_segment_header(path: Path) -> SegmentHeader:
    with open(path, "rb") as fh:
        raw = fh.read(_LONG_HEADER.size)
    if len(raw) < _LONG_HEADER.size:
        raise WalFileError("The file is too short to be a WAL segment.")
    magic, info, tli, pageaddr, _rem, sysid, seg_size, blcksz = _LONG_HEADER.unpack(raw)
    if not info & XLP_LONG_HEADER or magic & 0xFF00 != 0xD100:
        raise WalFileError("The file does not start with a WAL segment header.")
    return SegmentHeader(magic=magic, timeline=tli, page_address=pageaddr, system_identifier=sysid,
                         segment_size=seg_size, block_size=blcksz)


def check_segment(path: Path, *, start_lsn_of, size: int) -> SegmentHeader:
    """The header agrees with the file's size and with the start LSN its name gives (`start_lsn_of(seg_size)`).

    Catches a misnamed or foreign file before it is archived under a segment's name.
    """
    header = read_segment_header(path)
    if header.segment_size != size:
        raise WalFileError(f"The header says segments of {header.segment_size} bytes but the file has {size}.")
    if header.page_address != start_lsn_of(header.segment_size):
        raise WalFileError("The header's page address is not the start of the segment its name gives.")
    return header


def pg_waldump_for(header: SegmentHeader) -> str:
    """pg_waldump of the version that wrote the file when installed side by side (Debian), else the configured one."""
    version = header.major_version
    if version:
        candidate = Path(f"/usr/lib/postgresql/{version}/bin/pg_waldump")
        if candidate.exists():
            return str(candidate)
    from apps.databases.pgtools import pg_bin

    return pg_bin("pg_waldump")


@dataclass(frozen=True)
class SegmentScan:
    last_transaction_at: datetime | None  # the last COMMIT/ABORT record's time
    restore_points: list[tuple[str, str]]  # (name, LSN) of each RESTORE_POINT record
    warning: str = ""


def scan_segment(path: Path, *, segment_name: str, header: SegmentHeader) -> SegmentScan:
    """The last COMMIT/ABORT time and the restore points in this one segment, in one pg_waldump pass.

    pg_waldump sees the file alone, under its segment name, in a private directory: it cannot read on into
    the next segment of pg_wal, and a `.partial` file is read like the segment it is. Its expected stop at
    the end of the segment (next file missing, or zeroes) is not a warning.
    """
    with tempfile.TemporaryDirectory(prefix="walscan-") as tmp:
        os.symlink(Path(path).resolve(), Path(tmp) / segment_name)
        env = {**os.environ, "TZ": "UTC"}  # pg_waldump prints times in the local zone
        last, points = None, []
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                [pg_waldump_for(header), "--rmgr=Transaction", "--rmgr=XLOG", "--path", tmp, segment_name],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env, text=True,
            )
            with proc.stdout:
                for line in proc.stdout:
                    if "RESTORE_POINT" in line and (rp := _RESTORE_POINT.search(line.rstrip("\n"))):
                        points.append((rp.group(2), rp.group(1)))
                        continue
                    m = _XACT_TIME.search(line)
                    if m:
                        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f" if "." in m.group(1)
                                               else "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
                        last = at if last is None or at > last else last
            rc = proc.wait()
            err.seek(0)
            message = err.read().decode(errors="replace").strip()
    normal_end = ("could not find file", "invalid record length", "invalid magic number",
                  "contrecord is requested", "missing contrecord", "invalid record offset")
    if rc != 0 and not any(s in message for s in normal_end):
        return SegmentScan(last, points, f"pg_waldump could not read {segment_name}: {message[-300:]}")
    return SegmentScan(last, points)

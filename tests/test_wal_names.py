"""WAL file names are identifiers: only PostgreSQL's four shapes pass; segment numbers and LSNs round-trip."""
import pytest

from apps.backups import wal_names
from apps.core.errors import UserError


@pytest.mark.parametrize("name, kind, tli, log, seg", [
    ("000000010000000000000003", "segment", 1, 0, 3),
    ("0000000A000000FF000000FE", "segment", 10, 255, 254),
    ("000000020000000100000000.partial", "partial", 2, 1, 0),
    ("000000010000000000000002.00000028.backup", "backup", 1, 0, 2),
    ("0000000B.history", "history", 11, None, None),
])
def test_names_parse(name, kind, tli, log, seg):
    wal = wal_names.parse(name)
    assert (wal.kind, wal.timeline, wal.log, wal.seg) == (kind, tli, log, seg)


@pytest.mark.parametrize("name", [
    "../x", "../000000010000000000000003", "pg_wal/000000010000000000000003", "/etc/passwd", "",
    "000000010000000000000003/", "00000001000000000000000a", "0000000100000000000000033", "00000001.history.x",
    "000000000000000000000003", "00000000.history", "000000010000000000000003.partial/..", "RECOVERYXLOG",
    "00000001000000000000000G", " 000000010000000000000003", "000000010000000000000003\n",
])
def test_anything_else_is_refused(name):
    with pytest.raises(UserError, match="Not a WAL file name"):
        wal_names.parse(name)


@pytest.mark.parametrize("size", [1 << 20, 16 << 20, 1 << 30])
def test_segment_numbers_round_trip(size):
    for segno in (0, 1, 255, 256, 4095, 4096, 123457):
        name = wal_names.segment_name(3, segno, size)
        wal = wal_names.parse(name)
        assert wal.segno(size) == segno and wal.start_lsn(size) == segno * size


def test_16mb_names_are_postgres_names():
    # pg_walfile_name('1/2000000') on a 16 MB cluster
    assert wal_names.parse("000000010000000100000002").start_lsn(16 << 20) == wal_names.parse_lsn("1/2000000")


def test_lsns_and_sizes():
    assert wal_names.parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert wal_names.format_lsn(wal_names.parse_lsn("0/3000028")) == "0/3000028"
    for bad in ("", "0", "/1", "1/", "x/1", "1/2/3", "0_1/2", " 1/2", "123456789/0"):
        with pytest.raises(UserError):
            wal_names.parse_lsn(bad)
    assert wal_names.check_segment_size(64 << 20) == 64 << 20
    for bad in (0, 1000, (1 << 20) + 1, 2 << 30):
        with pytest.raises(UserError):
            wal_names.check_segment_size(bad)

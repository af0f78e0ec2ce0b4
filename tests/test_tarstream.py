"""Tar streams: the header scan used for file indexes, the member writer, and the refusals of the extractor."""
import io
import os
import tarfile

import pytest

from apps.databases.engines import tarstream


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], fmt=tarfile.USTAR_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes, mtime: int = 1_700_000_000) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), mtime
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def _in_chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk", [1, 7, 512, 513, 1 << 20])
def test_the_scanner_lists_members_and_captures_asked_ones_whatever_the_chunking(chunk):
    long_name = "base/16384/" + "x" * 150  # needs a pax header
    d = tarfile.TarInfo("base")
    d.type = tarfile.DIRTYPE
    data = _tar([(d, None), _file("backup_label", b"START WAL LOCATION: 0/2000028 (file x)\n"),
                 _file(long_name, b"a" * 1000, mtime=1_700_000_123), _file("empty", b"")], fmt=tarfile.PAX_FORMAT)
    scanner = tarstream.TarScanner(capture=["backup_label"])
    for piece in _in_chunks(data, chunk):
        scanner.feed(piece)
    assert scanner.ended
    assert [(m.path, m.type, m.size) for m in scanner.members] == [
        ("base", "dir", 0), ("backup_label", "file", 39), (long_name, "file", 1000), ("empty", "file", 0)]
    assert scanner.members[2].mtime == 1_700_000_123
    assert scanner.captured == {"backup_label": b"START WAL LOCATION: 0/2000028 (file x)\n"}


def test_written_members_read_back_with_tarfile_and_a_shrunk_file_is_zero_padded():
    stream = b"".join([
        tarstream.dir_member("global", 1_700_000_000),
        *tarstream.file_member("global/pg_control", size=10, mtime=1_700_000_001, chunks=[b"0123", b"456789xx"]),
        *tarstream.file_member("shrunk", size=6, mtime=1_700_000_002, chunks=[b"abc"]),
        tarstream.end_of_archive(),
    ])
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        assert tar.getnames() == ["global", "global/pg_control", "shrunk"]
        assert tar.extractfile("global/pg_control").read() == b"0123456789"
        assert tar.extractfile("shrunk").read() == b"abc\0\0\0"


REFUSED = [
    (_file("/etc/evil", b"x"), "absolute"),
    (_file("../evil", b"x"), "escaping"),
    (_file("base/../../evil", b"x"), "escaping"),
    (_special("pg_tblspc/16400", tarfile.SYMTYPE, "/elsewhere"), "link"),
    (_special("base/link", tarfile.SYMTYPE, "../../../etc"), "link"),
    (_special("hard", tarfile.LNKTYPE, "/etc/passwd"), "link"),
    (_special("dev", tarfile.CHRTYPE), "device"),
    (_special("fifo", tarfile.FIFOTYPE), "device"),
]


def _stream_extract(root, data: bytes, chunk: int = 1 << 20, select=None) -> tarstream.Extractor:
    extractor = tarstream.Extractor(root)
    tar = tarstream.StreamExtractor(extractor, select=select)
    try:
        for piece in _in_chunks(data, chunk):
            tar.feed(piece)
        tar.close()
    finally:
        tar.abort()
    return extractor


@pytest.mark.parametrize("chunk", [1, 100, 512, 4096, 1 << 20])
def test_the_stream_extractor_writes_what_tarfile_would_whatever_the_chunking(tmp_path, chunk):
    d = tarfile.TarInfo("base/16384")
    d.type, d.mode = tarfile.DIRTYPE, 0o750
    long_name = "base/16384/" + "y" * 150  # pax header
    members = [(d, None), _file("PG_VERSION", b"15\n", mtime=1_700_000_005), _file(long_name, bytes(range(256)) * 40),
               _file("base/16384/empty", b""), _file("global/pg_control", b"c" * 8192)]
    data = _tar(members, fmt=tarfile.PAX_FORMAT)
    root = tmp_path / "root"
    root.mkdir()
    extractor = _stream_extract(root, data, chunk)
    assert (extractor.files, extractor.bytes) == (4, 3 + 10240 + 8192)
    assert (root / "PG_VERSION").read_bytes() == b"15\n"
    assert (root / "PG_VERSION").stat().st_mtime == 1_700_000_005
    assert (root / long_name).read_bytes() == bytes(range(256)) * 40
    assert (root / "base/16384/empty").read_bytes() == b""
    assert (root / "global/pg_control").read_bytes() == b"c" * 8192
    assert (root / "base/16384").stat().st_mode & 0o777 == 0o750


def test_the_stream_extractor_writes_only_selected_files_but_checks_every_path(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    data = _tar([_file("a", b"AAA"), _file("b", b"BBBB"), _file("c", b"C")])
    seen = []
    _stream_extract(root, data, 7, select=lambda rel, m: seen.append(rel) or rel != "b")
    assert seen == ["a", "b", "c"] and sorted(p.name for p in root.iterdir()) == ["a", "c"]
    assert (root / "c").read_bytes() == b"C"
    with pytest.raises(tarstream.TarError, match="escaping"):  # refused even when it would not be written
        _stream_extract(root, _tar([_file("../evil", b"x")]), select=lambda rel, m: False)


@pytest.mark.parametrize("member, reason", REFUSED)
def test_the_stream_extractor_refuses_members_that_could_escape_or_are_not_plain(tmp_path, member, reason):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(tarstream.TarError, match=reason):
        _stream_extract(root, _tar([_file("PG_VERSION", b"15\n"), member]), 300)
    assert (root / "PG_VERSION").read_bytes() == b"15\n"
    assert not (tmp_path / "evil").exists() and sorted(p.name for p in root.iterdir()) == ["PG_VERSION"]


@pytest.mark.parametrize("cut", [100, 512, 1500, 5632])
def test_the_stream_extractor_refuses_a_stream_cut_inside_a_member(tmp_path, cut):
    data = _tar([_file("a", b"x" * 5000), _file("b", b"y" * 100)])
    with pytest.raises(tarstream.TarError, match="ends inside"):
        _stream_extract(tmp_path, data[:cut], 64)


def test_a_corrupt_header_is_refused_by_the_stream_extractor(tmp_path):
    data = bytearray(_tar([_file("a", b"x" * 10)]))
    data[0:5] = b"zzzzz"  # the header checksum no longer matches
    with pytest.raises(tarstream.TarError, match="Malformed"):
        _stream_extract(tmp_path, bytes(data))


def test_precreated_files_take_the_members_data_and_mode_and_unwritten_ones_go(tmp_path):
    """Extractor.precreate makes the index's files ahead of the writer; the result is what the tar alone gives."""
    root = tmp_path / "root"
    root.mkdir()
    extractor = tarstream.Extractor(root, sync=True)
    extractor.make_dir(tarstream.safe_relpath("base"))
    grouped = _file("base/grouped", b"g" * 5000)
    grouped[0].mode = 0o640
    rels = ["base/grouped", "PG_VERSION", "base/not_in_the_tar", "nodir/late"]
    extractor.precreate([tarstream.safe_relpath(r) for r in rels])
    extractor._precreator.join()  # every precreatable file made before the writer starts
    assert (root / "base/not_in_the_tar").exists() and not (root / "nodir").exists()  # its directory was not made
    tar = tarstream.StreamExtractor(extractor)
    for piece in _in_chunks(_tar([_file("PG_VERSION", b"15\n"), grouped, _file("nodir/late", b"x")]), 700):
        tar.feed(piece)
    tar.close()
    extractor.sync_all()
    assert (root / "PG_VERSION").read_bytes() == b"15\n" and (root / "nodir/late").read_bytes() == b"x"
    assert (root / "base/grouped").read_bytes() == b"g" * 5000
    assert (root / "base/grouped").stat().st_mode & 0o777 == 0o640
    assert not (root / "base/not_in_the_tar").exists()  # precreated, written by no member: removed
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
        "PG_VERSION", "base", "base/grouped", "nodir", "nodir/late"]


def test_sync_all_fsyncs_every_file_then_every_directory(tmp_path, monkeypatch):
    """The restore's durability step: each file written, then each directory (the root too), is fsynced, the
    directories only once every file is."""
    root = tmp_path / "root"
    root.mkdir()
    extractor = tarstream.Extractor(root, sync=True)
    members = [_file(f"base/{n}/{m}", bytes([m]) * (m * 100)) for n in range(3) for m in range(1, 20)]
    tar = tarstream.StreamExtractor(extractor)
    for piece in _in_chunks(_tar([_file("PG_VERSION", b"15\n"), *members]), 4096):
        tar.feed(piece)
    tar.close()
    synced = []
    real = tarstream._fsync_path

    def observed(path: str, flags: int) -> None:
        real(path, flags)  # the real call; only recorded here
        synced.append((path, bool(flags & os.O_DIRECTORY)))

    monkeypatch.setattr(tarstream, "_fsync_path", observed)
    extractor.sync_all()
    files = {str(p) for p in root.rglob("*") if p.is_file()}
    dirs = {str(p) for p in root.rglob("*") if p.is_dir()} | {str(root)}
    assert len(files) == 58 and {p for p, d in synced if not d} == files
    assert {p for p, d in synced if d} == dirs and len(synced) == len(files) + len(dirs)
    first_dir = min(i for i, (_, d) in enumerate(synced) if d)
    assert all(not d for _, d in synced[:first_dir]) and first_dir == len(files)


def test_files_a_later_step_rewrites_are_not_written_back_when_extracted_but_still_synced(tmp_path, monkeypatch):
    """The restore's page deltas rewrite most pages of the files they change: starting those files' writeback as
    each is extracted sent their pages to the disk twice. They are only closed; sync_all still fsyncs them."""
    root = tmp_path / "root"
    root.mkdir()
    started = []
    real = tarstream.start_writeback

    def observed(fd: int, offset: int = 0, length: int = 0) -> None:
        started.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd, offset, length)

    monkeypatch.setattr(tarstream, "start_writeback", observed)
    extractor = tarstream.Extractor(root, sync=True, rewritten=frozenset({"base/1/16384", "base/1/16384_fsm"}))
    members = [_file(name, name.encode() * 300) for name in ("PG_VERSION", "base/1/16384", "base/1/16384_fsm",
                                                              "base/1/16390")]
    tar = tarstream.StreamExtractor(extractor)
    for piece in _in_chunks(_tar(members), 1000):
        tar.feed(piece)
    tar.close()
    synced = []
    real_fsync = tarstream._fsync_path
    monkeypatch.setattr(tarstream, "_fsync_path", lambda path, flags: (real_fsync(path, flags), synced.append(path)))
    extractor.sync_all()
    assert sorted(os.path.relpath(p, root) for p in started) == ["PG_VERSION", "base/1/16390"]
    assert {os.path.relpath(p, root) for p in synced} >= {"PG_VERSION", "base/1/16384", "base/1/16384_fsm",
                                                          "base/1/16390"}
    assert (root / "base/1/16384").read_bytes() == b"base/1/16384" * 300


def test_a_large_file_has_its_writeback_started_as_it_is_written_not_only_at_its_end(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setattr(tarstream, "WRITEBACK_EVERY", 10_000)
    started = []
    real = tarstream.start_writeback

    def observed(fd: int, offset: int = 0, length: int = 0) -> None:
        started.append((os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))
        real(fd, offset, length)

    monkeypatch.setattr(tarstream, "start_writeback", observed)
    # Asked for as the file is written (its size when asked: the background thread may run them later).
    asked, real_ask = [], tarstream.Extractor.write_back

    def ask(self, fd: int, rel) -> None:
        asked.append((str(rel), os.fstat(fd).st_size))
        real_ask(self, fd, rel)

    monkeypatch.setattr(tarstream.Extractor, "write_back", ask)
    extractor = tarstream.Extractor(root, sync=True)
    tar = tarstream.StreamExtractor(extractor)
    for piece in _in_chunks(_tar([_file("big", b"b" * 50_000), _file("small", b"s" * 100)]), 4096):
        tar.feed(piece)
    tar.close()
    extractor.sync_all()
    during = [size for rel, size in asked if rel == "big"]
    assert len(during) >= 4 and during[0] < 50_000  # asked for while it was being written
    big = [size for path, size in started if path.endswith("/big")]
    assert len(big) == len(during) + 1 and big[-1] == 50_000  # each carried out, then once complete
    assert [size for path, size in started if path.endswith("/small")] == [100]
    assert (root / "big").read_bytes() == b"b" * 50_000

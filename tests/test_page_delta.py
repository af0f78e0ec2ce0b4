"""The page-delta format (apps/backups/page_delta.py) and its in-place application (delta_restore.apply_records),
without a cluster: files that grow, shrink and stay, streams cut at every byte, the older crc32 format, and
deltas that do not fit the content they are applied to. The chain on a real cluster: test_incremental_delta.py.
"""
import os
import random
import subprocess
import sys
from pathlib import Path

import google_crc32c
import pytest

from apps.backups import delta_restore, page_delta
from apps.backups.page_delta import PAGE
from tests.patchers import patcher  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("patcher")  # each test with each patcher

REPO = Path(__file__).resolve().parent.parent


def _delta(files: dict[str, tuple[bytes, bytes]], *, magic: bytes = page_delta.MAGIC, end: bytes | None = None):
    """A page-delta stream turning each file's parent content into its new one, as the writer makes it."""
    crc = page_delta.CRCS[magic]
    out, pages = [magic], 0
    for path, (parent, new) in files.items():
        out.append(page_delta.file_record(path, len(parent), len(new)))
        check, last = page_delta.FileCheck(crc), -1
        for p in range(len(new) // PAGE):
            old = parent[p * PAGE:(p + 1) * PAGE].ljust(PAGE, b"\0")
            page = new[p * PAGE:(p + 1) * PAGE]
            if old != page:
                out.append(page_delta.page_record(p - last - 1, old, page))
                check.add(old, page)
                last, pages = p, pages + 1
        out.append(page_delta.file_end_record(check.old_crc, check.new_crc) if end is None else end)
    out.append(page_delta.end_record(len(files), pages))
    return out


def _changed_pages(contents: tuple[bytes, bytes]) -> int:
    parent, new = contents
    return sum(parent[p * PAGE:(p + 1) * PAGE].ljust(PAGE, b"\0") != new[p * PAGE:(p + 1) * PAGE]
               for p in range(len(new) // PAGE))


def _apply(chunks: list[bytes], parent: bytes) -> bytes:
    """Page by page (Page.apply, as a later incremental rebuilds a parent)."""
    reader, pages = page_delta.Reader(iter(chunks)), bytearray(parent)
    assert reader.next_file() == ("f", len(parent), len(parent))
    while (page := reader.next_page()) is not None:
        at = page.number * PAGE
        pages[at:at + PAGE] = page.apply(bytes(pages[at:at + PAGE]), "f")
    assert reader.next_file() is None and reader.ended
    return bytes(pages)


def _pgbench_like(rng: random.Random, parent: bytes, pages: int) -> bytes:
    """`parent` with a few pages changed as an update changes a heap page: LSN, bounds, a line pointer, a tuple."""
    new = bytearray(parent)
    for p in rng.sample(range(len(parent) // PAGE), pages):
        at = p * PAGE
        for offset, size in ((0, 8), (12, 4), (24 + 4 * rng.randrange(200), 4), (2000 + rng.randrange(5000), 100)):
            new[at + offset:at + offset + size] = rng.randbytes(size)
    return bytes(new)


def _kept_byte_flipped(parent: bytes, new: bytes) -> bytes:
    """`parent` with a byte flipped that the delta keeps, in the first page it changes (_pgbench_like changes
    bytes 0-7 and 12-15 of each, and none of 16-23, so a run ends before them and the next starts after)."""
    changed = next(p for p in range(len(parent) // PAGE) if parent[p * PAGE:(p + 1) * PAGE] != new[p * PAGE:(p + 1) * PAGE])
    other = bytearray(parent)
    other[changed * PAGE + 20] ^= 1
    return bytes(other)


@pytest.fixture
def files(tmp_path):
    """Parent and new content of three files: one changed in place, one grown, one shrunk (and an empty one)."""
    rng = random.Random(11)
    same = rng.randbytes(40 * PAGE)
    grown = rng.randbytes(9 * PAGE)
    shrunk = rng.randbytes(12 * PAGE)
    return {
        "base/1/100": (same, _pgbench_like(rng, same, 17)),
        "base/1/200": (grown, _pgbench_like(rng, grown, 3) + rng.randbytes(5 * PAGE)),
        "base/1/300": (shrunk, _pgbench_like(rng, shrunk, 4)[:7 * PAGE]),
        "base/1/400": (b"", b""),
    }


def _restored(root: Path, files: dict) -> None:
    for path, (parent, _new) in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(parent)


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_a_delta_applied_in_place_gives_every_file_byte_identical_whatever_the_chunking(tmp_path, files, chunk):
    blob = b"".join(_delta(files))
    _restored(tmp_path, files)
    reader = page_delta.Reader(iter([blob[i:i + chunk] for i in range(0, len(blob), chunk)]))
    pages = delta_restore.apply_records(tmp_path, reader, set(files))
    assert reader.ended and pages == sum(map(_changed_pages, files.values())) and 17 + 5 < pages < 17 + 3 + 5 + 4
    for path, (_parent, new) in files.items():
        assert (tmp_path / path).read_bytes() == new, path


def test_records_of_files_not_wanted_are_passed_over_and_a_missing_file_is_an_error(tmp_path, files):
    blob = b"".join(_delta(files))
    _restored(tmp_path, files)
    assert delta_restore.apply_records(tmp_path, page_delta.Reader(iter([blob])), {"base/1/200"}) == 3 + 5
    assert (tmp_path / "base/1/200").read_bytes() == files["base/1/200"][1]
    assert (tmp_path / "base/1/100").read_bytes() == files["base/1/100"][0]  # untouched
    (tmp_path / "base/1/300").unlink()
    with pytest.raises(page_delta.DeltaError, match="base/1/300 is not in the restored directory"):
        delta_restore.apply_records(tmp_path, page_delta.Reader(iter([blob])), {"base/1/300"})


def test_in_place_the_crcs_catch_other_parent_content_and_a_wrong_size(tmp_path, files):
    blob = b"".join(_delta(files))
    _restored(tmp_path, files)
    (tmp_path / "base/1/100").write_bytes(_kept_byte_flipped(*files["base/1/100"]))
    with pytest.raises(page_delta.DeltaError, match="base/1/100: the delta does not give the pages it recorded"):
        delta_restore.apply_records(tmp_path, page_delta.Reader(iter([blob])), {"base/1/100"})
    (tmp_path / "base/1/200").write_bytes(files["base/1/200"][0] + bytes(PAGE))
    with pytest.raises(page_delta.DeltaError, match=f"base/1/200 is {10 * PAGE} bytes, its delta is against"):
        delta_restore.apply_records(tmp_path, page_delta.Reader(iter([blob])), {"base/1/200"})


def test_runs_that_overflow_their_page_are_refused_before_anything_is_written(tmp_path):
    parent = bytes(3 * PAGE)
    record = bytearray(page_delta.page_record(1, bytes(PAGE), b"\1" * PAGE))  # page 1, one run of the whole page
    record[1 + 8:1 + 8 + 4] = (100).to_bytes(2, "little") + PAGE.to_bytes(2, "little")  # kept 100, then 8192 bytes
    blob = b"".join([page_delta.MAGIC, page_delta.file_record("f", len(parent), len(parent)), bytes(record),
                     page_delta.file_end_record(0, 0), page_delta.end_record(1, 1)])
    (tmp_path / "f").write_bytes(parent)
    with pytest.raises(page_delta.DeltaError, match="the runs of page 1 of f do not fit the page"):
        delta_restore.apply_records(tmp_path, page_delta.Reader(iter([blob])), {"f"})
    assert (tmp_path / "f").read_bytes() == parent


def test_the_per_file_crcs_catch_other_parent_content_a_wrong_result_and_a_missing_end_record():
    """A file's parent and new pages are checked once, at its end record (no checksum per page)."""
    rng = random.Random(8)
    parent = rng.randbytes(5 * PAGE)
    new = bytearray(parent)
    for at in (10, 3 * PAGE + 100, 3 * PAGE + 4000, 5 * PAGE - 1):
        new[at] ^= 0x5A
    new = bytes(new)
    chunks = _delta({"f": (parent, new)})
    assert len(chunks) == 2 + 3 + 2 and _apply(chunks, parent) == new  # pages 0, 3 and 4 only
    other = bytearray(parent)
    other[3 * PAGE + 8000] ^= 1  # a changed page's byte the delta keeps
    with pytest.raises(page_delta.DeltaError, match="f is not the content its delta was made against"):
        _apply(chunks, bytes(other))
    wrong_new = page_delta.file_end_record(*page_delta._E.unpack(chunks[-2][1:])[:1], 1234)
    with pytest.raises(page_delta.DeltaError, match="the delta does not give the pages it recorded"):
        _apply(_delta({"f": (parent, new)}, end=wrong_new), parent)
    with pytest.raises(page_delta.DeltaError, match="end without their end record"):
        _apply([*chunks[:-2], chunks[-1]], parent)


def test_the_older_crc32_format_is_still_applied_and_its_checks_still_hold(tmp_path, files):
    old_format = b"".join(_delta(files, magic=page_delta.MAGIC_CRC32))
    assert old_format.startswith(b"BSPD2\n") and old_format != b"".join(_delta(files))
    _restored(tmp_path, files)
    delta_restore.apply_records(tmp_path, page_delta.Reader(iter([old_format])), set(files))
    assert all((tmp_path / p).read_bytes() == new for p, (_old, new) in files.items())
    _restored(tmp_path, files)
    (tmp_path / "base/1/200").write_bytes(_kept_byte_flipped(*files["base/1/200"]))
    with pytest.raises(page_delta.DeltaError, match="base/1/200: the delta does not give the pages it recorded"):
        delta_restore.apply_records(tmp_path, page_delta.Reader(iter([old_format])), set(files))


@pytest.mark.parametrize("magic", [page_delta.MAGIC, page_delta.MAGIC_CRC32])
def test_the_hand_tool_applies_both_formats_with_or_without_google_crc32c(tmp_path, files, magic):
    blob = tmp_path / "pages.delta"
    blob.write_bytes(b"".join(_delta(files, magic=magic)))
    index = tmp_path / "files.json"
    index.write_text('{"files": [' + ", ".join(f'{{"path": "{p}", "deltas": ["L"]}}' for p in files) + "]}")
    for blocked in (False, True):
        root = tmp_path / f"data-{blocked}"
        _restored(root, files)
        # -S without site-packages: the standard library only, as on a machine without the application
        command = [sys.executable, *(["-S"] if blocked else []), str(REPO / "tools/apply_page_delta.py"),
                   "--pgdata", str(root), "--index", str(index), "--link", "L", str(blob)]
        done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ,
                              "PYTHONPATH": ""})
        assert done.returncode == 0, done.stderr
        assert ("in pure Python (slow)" in done.stderr) == (blocked and magic == page_delta.MAGIC)
        assert all((root / p).read_bytes() == new for p, (_old, new) in files.items())


def test_the_hand_tools_pure_python_crc32c_is_the_library_s():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import apply_page_delta
    finally:
        sys.path.remove(str(REPO / "tools"))
    rng = random.Random(3)
    assert apply_page_delta._crc32c_python(0, b"123456789") == 0xE3069283  # the CRC-32C check value
    a, b = rng.randbytes(100), rng.randbytes(PAGE)
    assert apply_page_delta._crc32c_python(apply_page_delta._crc32c_python(0, a), b) == \
        google_crc32c.extend(google_crc32c.extend(0, a), b)


@pytest.mark.parametrize("shares", [2, 3])
def test_in_processes_each_applies_every_other_batch_and_the_combined_crcs_are_checked(tmp_path, files, monkeypatch,
                                                                                       shares):
    monkeypatch.setattr(delta_restore, "BATCH_PAGES", 3)  # many batches per file (the children are forked after)
    blob = b"".join(_delta(files))
    chunks = [blob[i:i + 5000] for i in range(0, len(blob), 5000)]
    _restored(tmp_path, files)
    wanted = set(files) | {"base/1/500"}
    pages = delta_restore.apply_in_processes(tmp_path, lambda: iter(chunks), wanted, name="d", shares=shares)
    assert pages == sum(map(_changed_pages, files.values())) and wanted == {"base/1/500"}  # no record: left
    for path, (_parent, new) in files.items():
        assert (tmp_path / path).read_bytes() == new, path
    _restored(tmp_path, files)
    (tmp_path / "base/1/100").write_bytes(_kept_byte_flipped(*files["base/1/100"]))
    with pytest.raises(page_delta.DeltaError, match="base/1/100: the delta does not give the pages it recorded"):
        delta_restore.apply_in_processes(tmp_path, lambda: iter(chunks), set(files), name="d", shares=shares)
    (tmp_path / "base/1/300").unlink()
    with pytest.raises(page_delta.DeltaError, match="base/1/300 is not in the restored directory"):
        delta_restore.apply_in_processes(tmp_path, lambda: iter(chunks), set(files), name="d", shares=shares)


def test_crcs_of_parts_combine_into_the_crc_of_the_whole():
    import zlib
    rng = random.Random(5)
    for _ in range(20):
        a, b = rng.randbytes(rng.randrange(0, 3 * PAGE)), rng.randbytes(rng.randrange(0, 3 * PAGE))
        assert page_delta.crc_combine(page_delta.POLYNOMIALS[page_delta.MAGIC], google_crc32c.extend(0, a),
                                      google_crc32c.extend(0, b), len(b)) == google_crc32c.extend(0, a + b)
        assert page_delta.crc_combine(page_delta.POLYNOMIALS[page_delta.MAGIC_CRC32], zlib.crc32(a), zlib.crc32(b),
                                      len(b)) == zlib.crc32(a + b)


def test_a_block_encoded_at_once_gives_the_same_pages_and_crcs_as_page_by_page(tmp_path):
    rng = random.Random(21)
    parent = rng.randbytes(70 * PAGE)
    new = bytearray(_pgbench_like(rng, parent, 30))
    for p in (0, 5, 69):  # a page's first and last bytes, and runs 7 and 6 equal bytes apart
        new[p * PAGE] ^= 1
        new[p * PAGE + PAGE - 1] ^= 1
        new[p * PAGE + 100] ^= 1
        new[p * PAGE + 108] ^= 1  # 7 equal bytes between: two runs
        new[p * PAGE + 200] ^= 1
        new[p * PAGE + 207] ^= 1  # 6 equal bytes between: one run
    new = bytes(new)
    by_page = _delta({"f": (parent, new)})
    check, out, last = page_delta.FileCheck(), [page_delta.MAGIC, page_delta.file_record("f", len(parent), len(new))], -1
    for first in range(0, 70, 32):  # blocks of 32 pages, the last one short
        records, last = page_delta.block_records(parent[first * PAGE:(first + 32) * PAGE],
                                                 new[first * PAGE:(first + 32) * PAGE], first, last, check)
        out += records
    out += [page_delta.file_end_record(check.old_crc, check.new_crc), page_delta.end_record(1, len(out) - 2)]
    assert len(out) == len(by_page) and out[-2] == by_page[-2]  # the same pages, the same crcs
    assert sum(map(len, out)) <= sum(map(len, by_page))  # no equal bytes kept at a page's edges
    (tmp_path / "f").write_bytes(parent)
    delta_restore.apply_records(tmp_path, page_delta.Reader(iter(out)), {"f"})
    assert (tmp_path / "f").read_bytes() == new
    records, last = page_delta.block_records(parent[:PAGE], parent[:PAGE], 0, 7, page_delta.FileCheck())
    assert records == [] and last == 7


def test_in_processes_a_file_already_at_its_new_size_is_refused(tmp_path, files):
    """Each process accepts a file at its parent size or already extended (by the other): the parent then checks
    that the first to open it found the parent size."""
    blob = b"".join(_delta(files))
    _restored(tmp_path, files)
    (tmp_path / "base/1/200").write_bytes(files["base/1/200"][0] + bytes(5 * PAGE))  # as if grown: other content
    with pytest.raises(page_delta.DeltaError, match=f"base/1/200 is {14 * PAGE} bytes, its delta is against "
                                                    f"{9 * PAGE}"):
        delta_restore.apply_in_processes(tmp_path, lambda: iter([blob]), set(files), name="d", shares=2)

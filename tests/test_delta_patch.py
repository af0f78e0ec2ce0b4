"""Page deltas put into the pages as the extraction writes them (apps/backups/delta_patch.py), without a cluster:
whatever the chunking, a file written in two parts cut anywhere (the cut page's record left to finish), files
that grow and shrink, and deltas that do not fit. The restore of a real chain: test_incremental_delta.py."""
import os
import tarfile

import pytest

from apps.backups import delta_patch, page_delta
from apps.backups.page_delta import PAGE
from apps.databases.engines import tarstream
from tests.patchers import patcher  # noqa: F401 (a fixture)
from tests.test_page_delta import _changed_pages, _delta, _kept_byte_flipped, files  # noqa: F401 (a fixture)
from tests.test_tarstream import _file, _tar

pytestmark = pytest.mark.usefixtures("patcher")  # each test with each patcher


def _spool(tmp_path, files: dict, wanted=None) -> delta_patch.Spool:
    blob = b"".join(_delta(files))
    wanted = set(files) if wanted is None else wanted
    return delta_patch.spool(iter([blob[i:i + 5000] for i in range(0, len(blob), 5000)]), wanted,
                             directory=tmp_path, name="pages.delta of test")


@pytest.mark.parametrize("chunk", [1, 7, 4096, PAGE + 3, 1 << 20])
def test_files_patched_as_extracted_are_byte_identical_whatever_the_chunking(tmp_path, files, chunk):
    spool = _spool(tmp_path, files)
    root = tmp_path / "root"
    root.mkdir()
    contents = {path: parent for path, (parent, _new) in files.items()} | {"PG_VERSION": b"15\n"}
    blob = _tar([_file(path, data) for path, data in contents.items()], fmt=tarfile.PAX_FORMAT)
    extractor = tarstream.Extractor(root)
    tar = tarstream.StreamExtractor(extractor, patch=spool.open)
    for i in range(0, len(blob), chunk):
        tar.feed(blob[i:i + chunk])
    tar.close()
    reports = [spool.take_reports()]
    # Every record was applied on the way: none is left to finish.
    assert all(len(r) == 1 and r[0]["ended"] for r in reports[0].values())
    assert all(sum(s[2] for s in r[0]["segments"]) == spool.files[p].records for p, r in reports[0].items())
    assert delta_patch.finish(root, spool, reports) == sum(map(_changed_pages, files.values()))
    for path, (_parent, new) in files.items():
        assert (root / path).read_bytes() == new, path
    assert (root / "PG_VERSION").read_bytes() == b"15\n"
    spool.close()


@pytest.mark.parametrize("cut", [0, 3 * PAGE, 3 * PAGE + 1, 20 * PAGE - 5, 40 * PAGE])
@pytest.mark.parametrize("chunk", [7, 3000, 1 << 20])
@pytest.mark.parametrize("batch", [3, delta_patch.BATCH_PAGES])
def test_a_file_written_in_two_parts_cut_anywhere_is_byte_identical(tmp_path, files, cut, chunk, batch,
                                                                    monkeypatch):
    """A full's tar in parts cuts a file anywhere: each part's process makes the pages wholly its own (the
    second starting to read the file's records at the batch holding its first page's: `batch` records a
    batch); the page cut between them is made by finish."""
    monkeypatch.setattr(delta_patch, "BATCH_PAGES", batch)
    parent, new = files["base/1/100"]
    spool = _spool(tmp_path, files, {"base/1/100"})
    path = tmp_path / "f"
    path.write_bytes(bytes(len(parent)))  # made at its full size before the parts (Extractor.create_shared)
    reports = []
    assert len(spool.files["base/1/100"].marks) == (6 if batch == 3 else 1)  # 17 records
    for start, end in ((0, cut), (cut, len(parent))):
        fd = os.open(path, os.O_WRONLY)
        os.lseek(fd, start, os.SEEK_SET)
        writer = spool.open("base/1/100", fd, start)
        if batch == 3:  # read from the batch holding its first whole page's record, or the one before
            pages = [p for p in range(40) if parent[p * PAGE:(p + 1) * PAGE] != new[p * PAGE:(p + 1) * PAGE]]
            first = next((i for i, p in enumerate(pages) if p >= -(-start // PAGE)), len(pages))
            assert first - 3 < writer.index <= first
        for i in range(start, end, chunk):
            writer.feed(memoryview(parent[i:min(i + chunk, end)]))
        writer.close(at_end=end == len(parent))
        os.close(fd)
        reports.append(spool.take_reports())
    os.makedirs(tmp_path / "base/1")
    os.rename(path, tmp_path / "base/1/100")
    applied = sum(s[2] for report in reports for r in report["base/1/100"] for s in r["segments"])
    records = spool.files["base/1/100"].records
    changed_cut_page = cut % PAGE and parent[cut // PAGE * PAGE:][:PAGE] != new[cut // PAGE * PAGE:][:PAGE]
    assert applied == records - (1 if changed_cut_page else 0)
    assert delta_patch.finish(tmp_path, spool, reports) == records
    assert (tmp_path / "base/1/100").read_bytes() == new


def test_a_file_at_another_size_or_with_other_content_is_refused(tmp_path, files):
    parent, _new = files["base/1/200"]
    spool = _spool(tmp_path, files, {"base/1/200", "base/1/100"})
    fd = os.open(tmp_path / "x", os.O_WRONLY | os.O_CREAT)
    writer = spool.open("base/1/200", fd, 0)
    writer.feed(memoryview(parent + bytes(PAGE)))
    with pytest.raises(page_delta.DeltaError, match=f"base/1/200 is {10 * PAGE} bytes, its delta is against"):
        writer.close(at_end=True)
    os.close(fd)
    # A byte the delta keeps differs: the pages made are not the recorded ones, and finish says so.
    root = tmp_path / "root"
    (root / "base/1").mkdir(parents=True)
    fd = os.open(root / "base/1/100", os.O_WRONLY | os.O_CREAT)
    writer = spool.open("base/1/100", fd, 0)
    writer.feed(memoryview(_kept_byte_flipped(*files["base/1/100"])))
    writer.close(at_end=True)
    os.close(fd)
    spool.take_reports()
    reports = [{"base/1/100": [{"segments": writer.segments, "ended": True}]}]
    spool.files = {"base/1/100": spool.files["base/1/100"]}
    with pytest.raises(page_delta.DeltaError, match="base/1/100: the delta does not give the pages it recorded"):
        delta_patch.finish(root, spool, reports)


def test_the_spool_notes_only_wanted_files_and_refuses_a_cut_stream(tmp_path, files):
    spool = _spool(tmp_path, files, {"base/1/300", "base/1/999"})
    assert set(spool.files) == {"base/1/300"} and spool.files["base/1/300"].new_size == 7 * PAGE
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".pages-delta-")]  # unlinked from the start
    blob = b"".join(_delta(files))
    with pytest.raises(page_delta.DeltaError, match="ends early"):
        delta_patch.spool(iter([blob[:-9]]), set(files), directory=tmp_path, name="x")

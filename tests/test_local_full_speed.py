"""The local full's fast paths keep its tar exact: header lengths computed without making the headers."""
import io
import itertools
import os
import tarfile

from apps.databases.engines import tarstream
from apps.databases.engines.incremental import TarLayout, _header, _header_len


def test_a_header_length_computed_without_the_header_is_the_made_headers_length():
    names = ["a", "base/1/123", "x" * 99, "x" * 100, "x" * 101, "d/" + "y" * 97, "d/" + "y" * 98, "d/" + "y" * 99,
             "é", "base/é" * 3, "x/", "x" * 99 + "/", "p" * 300]
    sizes = [-1, 0, 5, 8 ** 11 - 1, 8 ** 11, 10 ** 13]  # -1: a directory
    mtimes = [0, 1_700_000_000, -5, 8 ** 11 - 1, 8 ** 11]
    lengths = set()
    for name, size, mtime in itertools.product(names, sizes, mtimes):
        assert _header_len(name, size, mtime) == len(_header(name, size, mtime)), (name, size, mtime)
        lengths.add(_header_len(name, size, mtime))
    assert lengths > {512}  # the slow path (PAX records) was taken too


def test_a_layout_with_long_and_non_ascii_names_is_a_readable_tar_cut_anywhere(tmp_path):
    root = tmp_path / "data"
    deep = "d" * 60 + "/" + "e" * 60  # a directory whose name needs a PAX record
    (root / deep).mkdir(parents=True)
    contents = {"short": os.urandom(700), f"{deep}/f" + "g" * 50: os.urandom(3000), "é-file": os.urandom(513)}
    for rel, data in contents.items():
        (root / rel).write_bytes(data)
    listed = [("dir", "d" * 60, (root / ("d" * 60)).stat()), ("dir", deep, (root / deep).stat())]
    listed += [("file", rel, (root / rel).stat()) for rel in contents]
    layout = TarLayout(root, listed)
    assert [m[1] for m in layout.members] == [len(_header(m[2], m[3], m[4])) for m in layout.members]
    assert any(m[1] > 512 for m in layout.members)
    for cuts in (layout.cuts(1), layout.cuts(3), [0, 1, 700, 5000, layout.size]):
        whole = b"".join(b"".join(layout.chunks(a, b)) for a, b in zip(cuts, cuts[1:])) + tarstream.end_of_archive()
        with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
            assert [m.name for m in tar.getmembers()] == [e[1] for e in listed]
            got = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        assert got == contents


def test_a_pool_of_forked_workers_takes_every_part_once_and_reports_failures():
    import time

    from apps.documents import forked

    def work(part, report):
        report(part)
        time.sleep(part / 200)
        return {"part": part, "pid": os.getpid()}

    parts = [9, 8, 3, 2, 2, 1, 1, 1]
    progress = []
    results = forked.run(parts, work, workers=2, on_progress=progress.append)
    assert [r["part"] for r in results] == parts  # each part's result in its place
    assert len({r["pid"] for r in results}) == 2 and os.getpid() not in {r["pid"] for r in results}
    assert progress[-1] == sum(parts)

    def failing(part, report):
        if part == 3:
            return {"error": "part 3 failed"}
        if part == 2:
            os._exit(3)  # a child dying mid-part: its part, and what it would have taken, have no result
        time.sleep(0.05)
        return {"part": part}

    results = forked.run([1, 3, 2, 1], failing, workers=2)
    assert {"error": "part 3 failed"} in results and results[2] is None
    assert forked.run([1, 2], work, workers=5)[1]["part"] == 2  # more workers than parts: one child each


def test_a_childs_progress_reaches_the_parent_summed_not_a_line_per_report():
    """A restore's child reports each chunk: a line per report woke the parent ~2,000 times a restore. They go
    at most every forked.REPORT_EVERY seconds, summed, and the rest before the result: none is lost."""
    from apps.documents import forked

    def work(part, report):
        for _ in range(5000):
            report(part)
        return {"part": part}

    progress = []
    results = forked.run([1, 2], work, on_progress=progress.append)
    assert [r["part"] for r in results] == [1, 2]
    assert progress[-1] == 5000 * 3 and sorted(progress) == progress
    assert len(progress) < 100  # (5000 reports each, in far under a second)

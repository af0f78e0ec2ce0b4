"""A tar cut in parts anywhere but inside a header (apps/databases/engines/incremental.TarLayout, the parts of a
full read from the data directory), each part extracted on its own from its recorded start (tarstream)."""
import os
import random
from pathlib import Path, PurePosixPath

import pytest

from apps.databases.engines import tarstream
from apps.databases.engines.incremental import TarLayout


@pytest.fixture
def source(tmp_path) -> tuple[Path, list]:
    rng = random.Random(8)
    root = tmp_path / "src"
    (root / "base" / "1").mkdir(parents=True)
    sizes = [0, 1, 511, 512, 513, 8192 * 3 + 17, 200_000, 3, 1 << 20]
    for i, size in enumerate(sizes):
        (root / "base" / "1" / f"{1000 + i}").write_bytes(rng.randbytes(size))
    (root / "base" / "1" / ("long" + "x" * 120)).write_bytes(b"pax header")  # a header longer than 512 bytes
    listed = [("dir", "base", (root / "base").stat()), ("dir", "base/1", (root / "base" / "1").stat())]
    for p in sorted((root / "base" / "1").iterdir()):
        listed.append(("file", f"base/1/{p.name}", p.stat()))
    return root, listed


def _tail() -> bytes:
    return b"".join([*tarstream.file_member("backup_label", size=5, mtime=1, chunks=[b"label"]),
                     tarstream.end_of_archive()])


def _extract_parts(layout: TarLayout, cuts: list[int], dest: Path, order=None, damage=None) -> tarstream.Extractor:
    """Each part extracted by an extractor of its own (as by a forked process), in `order` (default: last first,
    so a file's later half is written before its earlier one is opened)."""
    records = [layout.part_start(c) for c in cuts] + [layout.part_start(layout.size)]
    parts = [b"".join(layout.chunks(cuts[i], cuts[i + 1])) for i in range(len(cuts) - 1)] + [_tail()]
    if damage:
        parts = damage(parts)
    dest.mkdir()
    parent = tarstream.Extractor(dest)
    for r in records[1:]:
        if r["left"]:
            parent.create_shared(PurePosixPath(r["path"]), r["file_offset"] + r["left"])
    total = tarstream.Extractor(dest)
    for i in order or reversed(range(len(parts))):
        child = tarstream.Extractor(dest)
        child.shared = set(parent.shared)
        tar = tarstream.StreamExtractor(child, start={**records[i], "write": True} if i else None,
                                        end=records[i + 1] if i + 1 < len(parts) else None)
        try:
            for k in range(0, len(parts[i]), 7000):
                tar.feed(parts[i][k:k + 7000])
            tar.close()
        finally:
            tar.abort()
        total.files += child.files
        total.bytes += child.bytes
    return total


def _same(src: Path, dest: Path) -> None:
    for p in src.rglob("*"):
        if p.is_file():
            assert (dest / p.relative_to(src)).read_bytes() == p.read_bytes(), p
            assert int((dest / p.relative_to(src)).stat().st_mtime) == int(p.stat().st_mtime)


def test_cuts_inside_headers_move_to_the_header_start_and_every_part_restores_on_its_own(source, tmp_path):
    root, listed = source
    layout = TarLayout(root, listed)
    for pos, header_len, rel, size, _ in layout.members:
        for cut in (pos + 1, pos + header_len - 1):
            assert layout.cuts(2) and layout._at_headers([0, cut, layout.size])[1] == pos
    # cuts at every kind of place: a header's start, inside data (early, late), inside padding
    data_cuts = []
    for pos, header_len, rel, size, _ in layout.members:
        if size > 600:
            data_cuts += [pos + header_len, pos + header_len + 1, pos + header_len + size - 1]
            if size % 512:
                data_cuts.append(pos + header_len + size + 1)  # inside the padding
    rng = random.Random(1)
    files = sum(1 for kind, *_ in listed if kind == "file") + 1
    for n in range(12):
        cuts = sorted({0, *rng.sample(data_cuts, 3), layout.size})
        if n % 3 == 0:
            cuts = layout._at_headers(sorted({0, *rng.sample(range(layout.size), 3), layout.size}))
            cuts = sorted(set(cuts))
        dest = tmp_path / f"out{n}"
        extracted = _extract_parts(layout, cuts, dest)
        _same(root, dest)
        assert (dest / "backup_label").read_bytes() == b"label"
        assert extracted.files == files  # a file cut in two is counted once
        assert extracted.bytes == sum(st.st_size for kind, _, st in listed if kind == "file") + 5
    assert [r["offset"] for r in map(layout.part_start, layout.balanced_cuts(2, every=1 << 16, sample=4096))]


def test_a_part_that_does_not_end_where_the_next_begins_or_a_last_part_cut_short_is_refused(source, tmp_path):
    root, listed = source
    layout = TarLayout(root, listed)
    big = next(m for m in layout.members if m[3] == 1 << 20)
    cuts = [0, big[0] + big[1] + 1000, layout.size]
    _extract_parts(layout, cuts, tmp_path / "ok")  # intact: fine
    with pytest.raises(tarstream.TarError, match="not where the next part begins"):
        _extract_parts(layout, cuts, tmp_path / "short", damage=lambda p: [p[0][:-512], *p[1:]])
    with pytest.raises(tarstream.TarError, match="ends inside"):
        _extract_parts(layout, cuts, tmp_path / "cut", damage=lambda p: [*p[:-1], p[-1][:700]])
    with pytest.raises(tarstream.TarError, match="end marker"):
        _extract_parts(layout, cuts, tmp_path / "nomark", damage=lambda p: [*p[:-1], p[-1][:-1024]])


def test_a_split_file_opened_by_both_writers_keeps_both_halves(source, tmp_path):
    """The part with the file's header opened last (after the continuation wrote its half): nothing truncated."""
    root, listed = source
    layout = TarLayout(root, listed)
    big = next(m for m in layout.members if m[3] == 1 << 20)
    cuts = [0, big[0] + big[1] + (1 << 19), layout.size]
    for order in ([1, 2, 0], [0, 1, 2]):
        dest = tmp_path / f"o{order[0]}"
        _extract_parts(layout, cuts, dest, order=order)
        _same(root, dest)
    assert os.path.exists(tmp_path / "o1" / big[2])


def test_a_forked_child_never_finalises_the_parents_garbage(tmp_path):
    """A child that collected a garbage cycle of the parent's ran its finalisers (a SQLite statement of the
    catalog's connection): with a lock another thread of the parent held at the fork, it hung for ever (seen in a
    pitr with its WAL fetch-ahead thread). forked.run freezes the parent's objects before forking."""
    import gc

    from apps.documents import forked

    marker = tmp_path / "finalised"

    class Cycle:
        def __del__(self):
            marker.write_text(str(os.getpid()))

    gc.disable()
    try:
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        del a, b  # garbage, not collected yet

        def work(part, report):
            gc.collect()
            return {"finalised_here": marker.exists() and marker.read_text() == str(os.getpid())}

        results = forked.run([0, 1], work)
    finally:
        gc.enable()
    assert results == [{"finalised_here": False}, {"finalised_here": False}]
    gc.collect()
    assert marker.read_text() == str(os.getpid())  # the parent still collects it

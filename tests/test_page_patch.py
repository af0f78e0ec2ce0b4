"""The compiled page patcher (apps/backups/_pagepatch.c) and its numpy fallback (delta_restore._numpy_put): the
compiled one is built and used, both make the same pages from the same records wherever they go, and both refuse
a record that does not fit at the same record. test_page_delta.py and test_delta_patch.py run with each
(tests/patchers.py)."""
import random

import numpy as np
import pytest

from apps.backups import delta_restore, page_delta
from apps.backups.page_delta import PAGE
from tests.patchers import PATCHERS
from tests.test_page_delta import _pgbench_like


def test_the_compiled_patcher_is_built_and_used():
    from apps.backups import _pagepatch  # built by `make setup` (pyproject.toml's ext-modules)

    assert delta_restore.put_records is _pagepatch.put


def _records(seed: int, *, tagged: bool):
    """A parent of 40 pages, its new version (25 pages changed as pgbench does, plus a page's first and last
    bytes), and the new pages' records as they lie in a region: one after the other from their fields on, with
    each next record's tag between them (the spool's) or not (page_batch's). Returns parent, new, region, at,
    pages."""
    rng = random.Random(seed)
    parent = rng.randbytes(40 * PAGE)
    new = bytearray(_pgbench_like(rng, parent, 25))
    new[0] ^= 1
    new[39 * PAGE + PAGE - 1] ^= 1
    records, _ = page_delta.block_records(parent, bytes(new), 0, -1, page_delta.FileCheck())
    parts, at, pages, pos, page = [], [], [], 0, -1
    for record in records:
        body = record[1:]  # from its fields on
        page += int.from_bytes(body[:4], "little") + 1
        at.append(pos)
        pages.append(page)
        parts.append(body + (b"P" if tagged else b""))
        pos += len(parts[-1])
    return parent, bytes(new), b"".join(parts), np.array(at, dtype=np.int32), pages


@pytest.mark.parametrize("tagged", [True, False])
@pytest.mark.parametrize("name", sorted(PATCHERS))
def test_each_patcher_makes_the_new_pages_in_place_and_in_a_buffer_of_their_own(name, tagged):
    put = PATCHERS[name]()
    parent, new, region, at, pages = _records(7, tagged=tagged)
    assert 25 <= len(pages) < 40
    target = bytearray(parent)
    assert put(target, region, at, np.array(pages, dtype=np.int32)) == -1
    assert bytes(target) == new
    # Records 3..12 into a buffer of their own, in reverse order (as FilePatch puts a chunk's pages).
    some = pages[3:13]
    buffer = bytearray(b"".join(parent[p * PAGE:(p + 1) * PAGE] for p in reversed(some)))
    assert put(memoryview(buffer), region, at[3:13], np.arange(len(some) - 1, -1, -1, dtype=np.int32)) == -1
    assert bytes(buffer) == b"".join(new[p * PAGE:(p + 1) * PAGE] for p in reversed(some))
    assert put(bytearray(PAGE), region, at[:0], np.array([], dtype=np.int32)) == -1  # nothing to put


def _spoiled(region: bytes, at, k: int, how: str):
    """The region, at and slots with record k spoiled `how`."""
    region, at = bytearray(region), at.copy()
    fields = int(at[k])
    slots = np.arange(len(at), dtype=np.int32)
    if how == "run past the page":
        region[fields + 8:fields + 10] = (PAGE - 2).to_bytes(2, "little")  # its first run kept PAGE - 2 bytes in
    elif how == "data shorter than the runs":
        length = int.from_bytes(region[fields + 6:fields + 8], "little")
        region[fields + 6:fields + 8] = (length - 1).to_bytes(2, "little")
    elif how == "data longer than the runs":
        length = int.from_bytes(region[fields + 6:fields + 8], "little")
        region[fields + 6:fields + 8] = (length + 1).to_bytes(2, "little")
    elif how == "fields out of the region":
        at[k] = len(region) - 4
    elif how == "region cut inside it":
        region = region[:fields + 12]
    elif how == "slot out of the target":
        slots[k] = len(at)
    elif how == "negative slot":
        slots[k] = -1
    return bytes(region), at, slots


@pytest.mark.parametrize("how", ["run past the page", "data shorter than the runs", "data longer than the runs",
                                 "fields out of the region", "region cut inside it", "slot out of the target",
                                 "negative slot"])
def test_both_patchers_refuse_a_record_that_does_not_fit_at_that_record(how):
    _parent, _new, region, at, _pages = _records(9, tagged=True)
    k = 6
    spoiled, at, slots = _spoiled(region, at, k, how)
    for name in sorted(PATCHERS):
        target = bytearray(len(at) * PAGE)
        assert PATCHERS[name]()(target, spoiled, at, slots) == k, name
    # The records before it are good: alone they are put.
    assert all(PATCHERS[name]()(bytearray(len(at) * PAGE), spoiled, at[:k], slots[:k]) == -1 for name in PATCHERS)


def test_a_bad_record_fails_the_batch_with_its_page_named():
    _parent, _new, region, at, pages = _records(9, tagged=True)
    spoiled, at, _slots = _spoiled(region, at, 4, "run past the page")
    runs = delta_restore.Runs(pages, spoiled, at, "base/1/100")
    with pytest.raises(page_delta.DeltaError, match=f"the runs of page {pages[4]} of base/1/100 do not fit"):
        runs.put(bytearray(len(pages) * PAGE), 0, len(pages), np.arange(len(pages)))
    runs.put(bytearray(len(pages) * PAGE), 0, 4, np.arange(4))  # those before it are put


def test_the_patchers_argument_checks():
    put = PATCHERS["compiled"]()
    with pytest.raises(ValueError, match="of the same length"):
        put(bytearray(PAGE), b"", np.zeros(2, dtype=np.int32), np.zeros(1, dtype=np.int32))
    with pytest.raises(TypeError, match="at must be an int32 array"):  # not 2 int32 read from 1 int64
        put(bytearray(PAGE), b"", np.zeros(1, dtype=np.int64), np.zeros(2, dtype=np.int32))
    with pytest.raises(TypeError, match="slots must be an int32 array"):
        put(bytearray(PAGE), b"", np.zeros(1, dtype=np.int32), np.zeros(1, dtype=np.float32))
    with pytest.raises(TypeError):
        put(b"read-only", b"", np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32))

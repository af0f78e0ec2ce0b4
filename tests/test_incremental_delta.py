"""Sub-page deltas of incrementals on a real cluster: a changed relation file is stored as the byte runs in which
its changed pages differ from the parent's version (pages.delta), not whole; a restore applies them in chain order and
refuses pages that are not the ones a delta was made against.
"""
import hashlib
import os
import time

import psycopg
import pytest

from apps.backups import delta_patch, delta_restore, file_index, page_delta, physical_restore
from apps.backups.restores import artifact_stream
from apps.databases.engines import tarstream
from tests.helpers import physical_target, table_contents, throwaway_cluster
from tests.test_physical_backup import backup, started
from tests.test_physical_backup import scratch as _scratch


@pytest.fixture(autouse=True)
def _page_deltas_on(settings):
    settings.BACKUP_PAGE_DELTAS = True  # off by default (backupsite/settings.py)


@pytest.fixture
def scratch():
    """test_physical_backup's: a directory the postgres user can reach."""
    yield from _scratch.__wrapped__()

TABLES = ["public.big", "public.grows", "public.shrinks"]


@pytest.fixture(scope="module")
def cluster():
    with throwaway_cluster("pgdelta-", start=False) as c:
        c.append_conf({"autovacuum": "off"})
        c.start()
        with psycopg.connect(**c.conn().kwargs(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        with psycopg.connect(**c.conn("shop").kwargs(), autocommit=True) as conn:
            # About 25 MB of rows that do not compress to nothing, fillfactor 70: updates stay on their page.
            conn.execute("CREATE TABLE big (id int PRIMARY KEY, n int, payload text) WITH (fillfactor = 70)")
            conn.execute("INSERT INTO big SELECT g, 0, md5(g::text) || md5((g * 7)::text) "
                         "FROM generate_series(1, 200000) g")
            conn.execute("CREATE TABLE grows (id int, payload text)")
            conn.execute("INSERT INTO grows SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
            conn.execute("CREATE TABLE shrinks (id int, payload text)")
            conn.execute("INSERT INTO shrinks SELECT g, md5(g::text) FROM generate_series(1, 40000) g")
            conn.execute("CREATE TABLE dropped (id int, payload text)")
            conn.execute("INSERT INTO dropped SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
            conn.execute("VACUUM (FREEZE, ANALYZE)")
            conn.execute("CHECKPOINT")
        time.sleep(2)  # the bulk's mtimes are now well before any backup's start
        yield c


@pytest.fixture
def target(db, cluster):
    return physical_target("delta", cluster)


def run(cluster, *statements) -> None:
    with psycopg.connect(**cluster.conn("shop").kwargs(), autocommit=True) as c:
        for s in statements:
            c.execute(s)


def relpath(cluster, table: str) -> str:
    with psycopg.connect(**cluster.conn("shop").kwargs()) as c:
        return c.execute("SELECT pg_relation_filepath(%s)", [table]).fetchone()[0]


def snapshot(cluster) -> dict:
    return {t: table_contents(cluster.conn("shop"), t) for t in TABLES}


def tar_members(b) -> set[str]:
    scanner = tarstream.TarScanner()
    for chunk in artifact_stream(backup=b, artifact=b.artifacts.get(name="files.tar")):
        scanner.feed(chunk)
    return {m.path for m in scanner.members}


def test_two_incrementals_store_page_deltas_and_restore_to_the_source(cluster, target, scratch, monkeypatch):
    full = backup(target, method="physical")
    big, grows, shrinks = relpath(cluster, "big"), relpath(cluster, "grows"), relpath(cluster, "shrinks")
    dropped = relpath(cluster, "dropped")
    run(cluster, "UPDATE big SET n = n + 1 WHERE id % 100 = 0",
        "INSERT INTO grows SELECT g, md5(g::text) FROM generate_series(20001, 30000) g")
    inc1 = backup(target, kind="incremental")
    # Pages the first incremental changed change again; one table grows, one is truncated in place by VACUUM
    # (rows at its end deleted), one is dropped.
    run(cluster, "UPDATE big SET n = n + 1 WHERE id % 100 = 0 OR id % 150 = 7",
        "INSERT INTO grows SELECT g, md5(g::text) FROM generate_series(30001, 45000) g",
        "DELETE FROM shrinks WHERE id > 15000", "VACUUM shrinks", "DROP TABLE dropped")
    inc2 = backup(target, kind="incremental")
    expected = snapshot(cluster)
    run(cluster, "UPDATE big SET n = n + 1 WHERE id < 1000")  # after the last backup: not restored

    for inc in (inc1, inc2):
        assert sorted(a.name for a in inc.artifacts.all()) == ["files.json", "files.tar", "pages.delta"]
    index1 = {f["path"]: f for f in file_index.load(inc1)["files"]}
    index2 = {f["path"]: f for f in file_index.load(inc2)["files"]}
    assert file_index.load(inc2)["file_index_version"] == file_index.VERSION
    # The big heap and the growing table: held by the full, changed by page deltas of the links.
    assert index1[big]["backup"] == full.pk and index1[big]["deltas"] == [inc1.pk]
    assert index2[big]["backup"] == full.pk and index2[big]["deltas"] == [inc1.pk, inc2.pk]
    assert index2[grows]["deltas"] == [inc1.pk, inc2.pk] and index2[grows]["size"] > index1[grows]["size"]
    assert index2[shrinks]["deltas"] == [inc2.pk] and index2[shrinks]["size"] < index1[shrinks]["size"]
    assert dropped not in index2
    assert big not in tar_members(inc1) and big not in tar_members(inc2) and grows not in tar_members(inc2)
    # Far less than the changed files: each changed page stored as the runs where it differs from the parent's.
    # (The second update prunes the pages the first left dead tuples on, which moves their rows: larger runs.)
    for inc, bound in ((inc1, 0.1), (inc2, 0.3)):
        delta = inc.artifacts.get(name="pages.delta")
        reader = page_delta.Reader(artifact_stream(backup=inc, artifact=delta))
        pages = 0
        while reader.next_file() is not None:
            while reader.next_page() is not None:
                pages += 1
        assert pages > 2000 and delta.size_raw < 0.3 * pages * page_delta.PAGE, (delta.size_raw, pages)
        assert inc.size_stored < bound * full.size_stored, (inc.size_stored, full.size_stored)

    pgdata = scratch / "data"
    # Batches of 64 records: each file's split over the processes applying them side by side, crcs combined.
    monkeypatch.setattr(delta_restore, "BATCH_PAGES", 64)
    result = physical_restore.restore_data_directory(inc2, pgdata)
    assert result["chain"] == [full.pk, inc1.pk, inc2.pk]
    # Byte for byte the content the incremental read (before any WAL replay).
    for path in (big, grows, shrinks):
        data = (pgdata / path).read_bytes()
        assert len(data) == index2[path]["size"] and hashlib.sha256(data).hexdigest() == index2[path]["sha256"]
    assert not (pgdata / dropped).exists()
    with started(pgdata) as restored:
        assert snapshot(restored) == expected


def test_with_page_deltas_off_a_changed_file_is_stored_whole_and_supersedes_earlier_deltas(cluster, target, scratch,
                                                                                            settings):
    """BACKUP_PAGE_DELTAS off (the default): the next incremental stores the changed heap whole in its tar, and its
    index entry holds it with no deltas, so the restore writes that copy and applies none of the earlier link's."""
    backup(target, method="physical")
    big = relpath(cluster, "big")
    run(cluster, "UPDATE big SET n = n + 1 WHERE id % 100 = 3")
    inc1 = backup(target, kind="incremental")  # deltas on (this module's fixture)
    settings.BACKUP_PAGE_DELTAS = False
    run(cluster, "UPDATE big SET n = n + 1 WHERE id % 90 = 5")
    inc2 = backup(target, kind="incremental")
    expected = snapshot(cluster)

    index1 = {f["path"]: f for f in file_index.load(inc1)["files"]}
    index2 = {f["path"]: f for f in file_index.load(inc2)["files"]}
    assert index1[big]["deltas"] == [inc1.pk] and big not in tar_members(inc1)
    assert index2[big]["backup"] == inc2.pk and not index2[big].get("deltas") and big in tar_members(inc2)
    pgdata = scratch / "data"
    physical_restore.restore_data_directory(inc2, pgdata)
    data = (pgdata / big).read_bytes()
    assert hashlib.sha256(data).hexdigest() == index2[big]["sha256"]
    with started(pgdata) as restored:
        assert snapshot(restored) == expected


@pytest.mark.parametrize("when", ["as extracted", "after the extraction"])
def test_a_delta_over_other_content_fails_the_restore_and_leaves_nothing(cluster, target, scratch, monkeypatch,
                                                                         when):
    """The deltas put into the pages as the extraction processes write them (delta_patch), or applied after
    (delta_restore: the path of a serial extraction or of deltas from two links): other content under a delta
    is caught by the crc of the pages made, and a file missing is named."""
    full = backup(target, method="physical")
    run(cluster, "UPDATE big SET n = n + 1 WHERE id % 100 = 0")
    inc = backup(target, kind="incremental")
    big = relpath(cluster, "big")
    assert file_index.load(inc)["files"] and inc.parent_id == full.pk
    pgdata = scratch / "data"

    if when == "after the extraction":
        monkeypatch.setattr(delta_patch, "prepare", lambda *args, **kwargs: None)
        apply_chain = delta_restore.apply_chain

        def over_other_content(root, chain, index, ctx=None):
            with open(root / big, "r+b") as fh:  # the holder's file, extracted, then altered
                fh.write(b"\xff" * (1 << 20))
            return apply_chain(root, chain, index, ctx)

        def file_gone(root, chain, index, ctx=None):
            (root / big).unlink()
            return apply_chain(root, chain, index, ctx)

        hooks = [(delta_restore, "apply_chain", over_other_content), (delta_restore, "apply_chain", file_gone)]
    else:
        feed, finish = delta_patch.FilePatch.feed, delta_patch.finish

        def over_other_content(self, data):  # the holder's file altered as it is extracted
            if self.path == big and self.pos < (1 << 20):
                data = memoryview(b"\xff" * len(data))
            return feed(self, data)

        def file_gone(root, spool, reports):
            (root / big).unlink()
            return finish(root, spool, reports)

        hooks = [(delta_patch.FilePatch, "feed", over_other_content), (delta_patch, "finish", file_gone)]

    monkeypatch.setattr(*hooks[0])
    with pytest.raises(physical_restore.ChainError,
                       match=rf"page deltas of backup {inc.pk} do not fit.*{big}: the delta does not give the pages"):
        physical_restore.restore_data_directory(inc, pgdata)
    assert not pgdata.exists() and not (scratch / "data.partial").exists()
    assert not [p for p in os.listdir(scratch) if p.startswith(".pages-delta-")]

    # A file the deltas rely on that is not there at all.
    monkeypatch.setattr(*hooks[1])
    with pytest.raises(physical_restore.ChainError, match=f"{big} is not in the restored directory"):
        physical_restore.restore_data_directory(inc, pgdata)
    assert not pgdata.exists() and not (scratch / "data.partial").exists()
    monkeypatch.undo()
    physical_restore.restore_data_directory(inc, pgdata)  # intact: restores
    entry = next(f for f in file_index.load(inc)["files"] if f["path"] == big)
    assert hashlib.sha256((pgdata / big).read_bytes()).hexdigest() == entry["sha256"]


def test_the_standalone_tool_applies_a_links_deltas_by_hand(cluster, target, scratch, monkeypatch):
    """tools/apply_page_delta.py (standard library only) does what the restore does, from the decrypted
    pages.delta and the newest files.json; applied twice, the file's crc32 check stops it."""
    import json
    import subprocess
    import sys

    backup(target, method="physical")
    run(cluster, "UPDATE big SET n = n + 1 WHERE id % 90 = 0")
    inc = backup(target, kind="incremental")
    index = file_index.load(inc)
    changed = [e for e in index["files"] if e.get("deltas")]
    assert changed
    monkeypatch.setattr(delta_patch, "prepare", lambda *a, **k: None)  # the holders' files only
    monkeypatch.setattr(delta_restore, "apply_chain", lambda *a, **k: 0)
    pgdata = scratch / "data"
    physical_restore.restore_data_directory(inc, pgdata)
    assert any(hashlib.sha256((pgdata / e["path"]).read_bytes()).hexdigest() != e["sha256"] for e in changed)
    (scratch / "files.json").write_text(json.dumps(index))
    with open(scratch / "pages.delta", "wb") as fh:
        fh.writelines(artifact_stream(backup=inc, artifact=inc.artifacts.get(name="pages.delta")))
    command = [sys.executable, "tools/apply_page_delta.py", "--pgdata", str(pgdata), "--index",
               str(scratch / "files.json"), "--link", inc.pk, str(scratch / "pages.delta")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for e in changed:
        assert hashlib.sha256((pgdata / e["path"]).read_bytes()).hexdigest() == e["sha256"], e["path"]
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 1 and "is not the content its delta was made against" in again.stderr


def test_files_the_deltas_leave_are_fsynced_beside_them_and_the_rest_after(cluster, target, scratch, monkeypatch):
    """Every restored file is fsynced before the rename: those no delta changes (nor the WAL completion) while the
    deltas are applied, the ones they changed and the WAL after, then every directory."""
    backup(target, method="physical")
    run(cluster, "UPDATE big SET n = n + 1 WHERE id % 100 = 0")
    inc = backup(target, kind="incremental")
    changed = {f["path"] for f in file_index.load(inc)["files"] if f.get("deltas")}
    assert changed
    events, applied = [], []
    fsync_path, apply_chain = tarstream._fsync_path, delta_restore.apply_chain

    def recording_fsync(path, flags):
        events.append((path, bool(applied), bool(flags & os.O_DIRECTORY)))
        return fsync_path(path, flags)

    def recording_apply(*args, **kwargs):
        pages = apply_chain(*args, **kwargs)
        applied.append(pages)
        return pages

    monkeypatch.setattr(tarstream, "_fsync_path", recording_fsync)
    monkeypatch.setattr(delta_patch, "prepare", lambda *a, **k: None)  # applied after the extraction
    monkeypatch.setattr(delta_restore, "apply_chain", recording_apply)
    pgdata = scratch / "data"
    physical_restore.restore_data_directory(inc, pgdata)
    partial = str(scratch / "data.partial") + os.sep
    files = {os.path.relpath(p, partial): after for p, after, is_dir in events if not is_dir}
    on_disk = {str(p.relative_to(pgdata)) for p in pgdata.rglob("*") if p.is_file()}
    assert set(files) == on_disk and len(files) == sum(not is_dir for _, _, is_dir in events)  # every file, once
    assert all(files[p] for p in changed) and all(after for p, after in files.items() if p.startswith("pg_wal/"))
    assert sum(not after for after in files.values()) > 100  # the rest while the deltas were applied
    last_file = max(i for i, (_, _, is_dir) in enumerate(events) if not is_dir)
    assert all(is_dir and after for _, after, is_dir in events[last_file + 1:]) and events[-1][2]

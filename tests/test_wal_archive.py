"""Continuous WAL archiving on a real cluster whose archive_command is wal_push (tests/wal_site.py).

wal_push and wal_fetch run as PostgreSQL runs them: as the postgres user, from the data directory, with
only the environment file. Storage failure, idempotency, conflicts, corruption, RPO, and the catalog's
view of gaps and of the recovery window are all checked against what is really archived.
"""
import hashlib
import os
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg.sql
import pytest

from apps.backups import wal_config, wal_names
from apps.databases.clusters import as_server_user
from tests.wal_site import TARGET, _give

SEG = 16 << 20


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def scratch(wal_site):
    """A directory the postgres user owns, for files wal_fetch writes and wal_push reads."""
    path = wal_site.base / f"scratch-{time.monotonic_ns()}"
    path.mkdir()
    _give(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fetch(site, name: str, dest: Path, ok: bool = True):
    return site.manage("wal_fetch", TARGET, name, str(dest), ok=ok)


def test_segments_are_archived_compressed_encrypted_and_catalogued(wal_site, scratch):
    name = wal_site.new_segment(rows=500)
    seg = wal_site.wait_archived(name)
    assert seg["timeline"] == 1 and seg["size_raw"] == SEG
    assert seg["start_lsn"] == wal_names.format_lsn(wal_names.parse(name).start_lsn(SEG))
    assert seg["key"] == f"targets/{TARGET}/wal/00000001/{name}.zst.aead"
    assert seg["last_commit_at"] is not None  # the 500-row insert committed in it
    stored = wal_site.root / seg["key"]
    head = stored.read_bytes()[:400]
    assert head.startswith(b"PGBRART1") and b'"cipher": "aes-256-gcm"' in head
    assert stored.stat().st_size < SEG // 4
    # wal_fetch, as restore_command would run it: from the data directory, to a relative path
    back = fetch(wal_site, name, Path("fetched"), ok=False)
    assert back.returncode != 0  # the postgres user cannot write the project directory: nothing half-written
    assert not list(Path(__file__).parent.parent.glob("*fetched*"))
    wal_site.manage("wal_fetch", TARGET, name, "pg_wal/RECOVERYXLOG-test", cwd=wal_site.cluster.data)
    restored = wal_site.cluster.data / "pg_wal" / "RECOVERYXLOG-test"
    try:
        assert _sha(restored) == seg["sha256_raw"]
    finally:
        restored.unlink()


def test_push_is_idempotent_and_never_overwrites(wal_site, scratch):
    name = wal_site.new_segment()
    seg = wal_site.wait_archived(name)
    copy = scratch / name
    fetch(wal_site, name, copy)
    started = time.monotonic()
    again = wal_site.manage("wal_push", TARGET, str(copy), "-v", "2")
    print(f"\nwal_push of an archived segment, whole process: {time.monotonic() - started:.2f} s "
          f"({again.stdout.strip()})")
    assert again.stdout.startswith(f"already archived {name}")
    stored = wal_site.root / seg["key"]
    before = stored.stat().st_mtime_ns

    with open(copy, "r+b") as fh:  # same name, other content
        fh.seek(SEG // 2)
        fh.write(b"\x01" if fh.read(1) != b"\x01" else b"\x02")
    other = wal_site.manage("wal_push", TARGET, str(copy), ok=False)
    assert other.returncode != 0
    assert f"A different {name} is already archived" in other.stderr and "refusing to overwrite" in other.stderr
    assert stored.stat().st_mtime_ns == before and wal_site.segment(name)["sha256_raw"] == seg["sha256_raw"]

    misnamed = scratch / wal_names.segment_name(1, wal_names.parse(name).segno(SEG) + 1000, SEG)
    copy.rename(misnamed)
    refused = wal_site.manage("wal_push", TARGET, str(misnamed), ok=False)
    assert refused.returncode != 0 and "page address" in refused.stderr
    assert wal_site.segment(misnamed.name) is None

    for bad in ("../x", str(scratch / "notwal")):
        (scratch / "notwal").write_bytes(b"x")
        out = wal_site.manage("wal_push", TARGET, bad, ok=False)
        assert out.returncode != 0 and "Not a WAL file name" in out.stderr
    unknown = wal_site.manage("wal_push", "no-such-target", str(misnamed), ok=False)
    assert unknown.returncode != 0 and "No target named" in unknown.stderr


def test_history_and_partial_files_are_archived(wal_site, scratch):
    name = wal_site.new_segment()
    wal_site.wait_archived(name)
    history = scratch / "00000002.history"
    history.write_text("1\t0/9000000\tno recovery target specified\n")
    partial = scratch / f"{name}.partial"
    fetch(wal_site, name, partial)
    for path in (history, partial):
        started = time.monotonic()
        pushed = wal_site.manage("wal_push", TARGET, str(path), "-v", "2")
        elapsed = time.monotonic() - started
        assert pushed.stdout.startswith(f"archived {path.name}")
        row = wal_site.segment(path.name)
        assert row is not None and row["sha256_raw"] == _sha(path), path.name
        print(f"\nwal_push of {path.name}, whole process: {elapsed:.2f} s ({pushed.stdout.strip()})")
    assert wal_site.segment(history.name)["timeline"] == 2 and wal_site.segment(history.name)["start_lsn"] == ""
    assert wal_site.segment(partial.name)["start_lsn"] == wal_site.segment(name)["start_lsn"]
    assert wal_site.segment(partial.name)["key"].endswith(f"/00000001/{name}.partial.zst.aead")
    fetch(wal_site, history.name, scratch / "h")
    assert (scratch / "h").read_text() == history.read_text()
    # A .partial is not a segment of the range: no gap, no extra segment.
    assert all(r["last"] != partial.name for r in wal_site.status()["timelines"]["1"]["ranges"])


def test_storage_failure_is_not_acknowledged_and_the_retry_archives(wal_site, scratch):
    wal_dir = wal_site.root / "targets" / TARGET / "wal" / "00000001"
    wal_site.wait_archived(wal_site.new_segment())  # the directory exists
    failures = wal_site.sql("SELECT failed_count FROM pg_stat_archiver")[0][0]
    wal_dir.chmod(0o500)  # read-only for its owner, postgres
    try:
        name = wal_site.new_segment()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            failed, last_failed = wal_site.sql("SELECT failed_count, last_failed_wal FROM pg_stat_archiver")[0]
            if failed > failures and last_failed == name:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("PostgreSQL never saw wal_push fail")
        assert wal_site.segment(name) is None
        assert not [p for p in wal_dir.iterdir() if p.name.startswith(name)]
        # The same, run by hand as PostgreSQL runs it: a clear message, no traceback, no secret.
        by_hand = wal_site.manage("wal_push", TARGET, f"pg_wal/{name}", cwd=wal_site.cluster.data, ok=False)
        assert by_hand.returncode != 0
        assert "Not archived" in by_hand.stderr and "Permission denied" in by_hand.stderr
        assert "Traceback" not in by_hand.stderr and "secret-key" not in by_hand.stderr
        assert os.environ["BACKUP_ENCRYPTION_KEYS"].split(":")[1][:20] not in by_hand.stderr
        assert wal_site.segment(name) is None
    finally:
        wal_dir.chmod(0o700)
    wal_site.new_segment()  # a new segment wakes the archiver, which retries the failed one first
    seg = wal_site.wait_archived(name)
    fetch(wal_site, name, scratch / name)
    assert _sha(scratch / name) == seg["sha256_raw"]


def test_fetch_refuses_what_is_missing_foreign_or_corrupt(wal_site, scratch):
    missing = wal_site.manage("wal_fetch", TARGET, "0000000100000000000000FF", str(scratch / "x"), ok=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "not in the WAL archive" in missing.stderr
    for bad in ("../../etc/passwd", "pg_wal/000000010000000000000001", "00000001.HISTORY"):
        out = wal_site.manage("wal_fetch", TARGET, bad, str(scratch / "x"), ok=False)
        assert out.returncode == 2 and "Not a WAL file name" in out.stderr
    assert not (scratch / "x").exists()

    name = wal_site.new_segment()
    seg = wal_site.wait_archived(name)
    stored = wal_site.root / seg["key"]
    saved = stored.read_bytes()
    try:
        damaged = bytearray(saved)
        damaged[len(damaged) // 2] ^= 0x40
        stored.write_bytes(bytes(damaged))
        out = wal_site.manage("wal_fetch", TARGET, name, str(scratch / name), ok=False)
        assert out.returncode == 2 and "cannot be restored" in out.stderr and "authentication" in out.stderr
        assert not list(scratch.iterdir())  # nothing written, not even a temporary file
        # wal_push of the intact original heals the damaged copy instead of acknowledging it
        original = scratch / "orig"
        original.mkdir()
        _give(original, 0o700)
        stored.write_bytes(saved)
        fetch(wal_site, name, original / name)
        stored.write_bytes(bytes(damaged))
        wal_site.manage("wal_push", TARGET, str(original / name))
        fetch(wal_site, name, scratch / name)
        assert _sha(scratch / name) == seg["sha256_raw"]
    finally:
        if not (scratch / name).exists():
            stored.write_bytes(saved)


def test_rpo_with_a_short_archive_timeout(wal_site):
    """Commit a marker and wait, without forcing a switch: archive_timeout (2 s here) bounds the loss."""
    (marker_at,), = wal_site.sql("INSERT INTO marks (note) VALUES ('rpo marker') RETURNING at")
    committed = time.monotonic()
    (name,), = wal_site.sql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
    seg = wal_site.wait_archived(name, timeout=120)
    rpo = time.monotonic() - committed
    print(f"\nRPO with archive_timeout=2 s: the marker's segment {name} was catalogued {rpo:.2f} s after its "
          f"commit (archive_config prints archive_timeout = 60)")
    assert _utc(seg["last_commit_at"]) >= marker_at  # the marker's commit is in it, and pg_waldump saw it


def _as_postgres_runs(line: str, data: Path, wal_path: str) -> subprocess.CompletedProcess:
    """Run an archive_command line as PostgreSQL does: placeholders replaced, /bin/sh, from the data directory."""
    command = re.sub(r"%([pf%])", lambda m: {"p": wal_path, "f": Path(wal_path).name, "%": "%"}[m.group(1)], line)
    return subprocess.run(as_server_user(["/bin/sh", "-c", command]), cwd=data, capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def test_a_backlog_is_archived_by_one_process_and_acknowledged_by_marker(wal_site):
    """With archiving held up, six segments pile up; one wal_push archives them all and leaves markers; the
    shell acknowledges a file by its marker only while the file's SHA-256 matches, without starting Python."""
    data, spool = wal_site.cluster.data, wal_site.spool
    (ours,), = wal_site.sql("SHOW archive_command")
    assert "--spool" in ours and "sha256sum" in ours  # the line archive_config printed, as pasted
    wal_site.sql("ALTER SYSTEM SET archive_command = '/bin/false'")
    wal_site.sql("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)
        names = [wal_site.new_segment(rows=200) for _ in range(6)]
        ready = {p.name[:-6] for p in (data / "pg_wal" / "archive_status").glob("*.ready")}
        assert set(names) <= ready
        assert all(wal_site.segment(n) is None for n in names)

        # PostgreSQL's call for the oldest starts wal_push, which archives the backlog in the same process.
        done = wal_site.manage("wal_push", TARGET, f"pg_wal/{names[0]}", "--spool", str(spool), "-v2", cwd=data)
        assert "archived ahead" in done.stdout
        for name in names:
            assert wal_site.segment(name) is not None, name
        for name in names[1:]:
            assert (spool / f"{name}.ok").read_text() == _sha(data / "pg_wal" / name)
        assert not (spool / f"{names[0]}.ok").exists()  # its own file is acknowledged by the exit code

        # The shell's side, with an interpreter that cannot start: only a marker can acknowledge.
        broken = wal_config.Invocation(python="/bin/false", manage="/nowhere/manage.py", env_file="/nowhere.env")
        line = wal_config.archive_command(TARGET, broken, spool=str(spool))
        acked = _as_postgres_runs(line, data, f"pg_wal/{names[1]}")
        assert acked.returncode == 0, acked.stderr
        assert not (spool / f"{names[1]}.ok").exists()  # consumed
        again = _as_postgres_runs(line, data, f"pg_wal/{names[1]}")
        assert again.returncode != 0  # no marker any more: it goes to wal_push (here: cannot start)
        (spool / f"{names[2]}.ok").write_text("0" * 64)  # a marker that does not match the file
        assert _as_postgres_runs(line, data, f"pg_wal/{names[2]}").returncode != 0
        (spool / f"{names[2]}.ok").unlink()
    finally:
        with psycopg.connect(**wal_site.cluster.conn().kwargs("wal-test"), autocommit=True) as c:
            c.execute(psycopg.sql.SQL("ALTER SYSTEM SET archive_command = {}").format(psycopg.sql.Literal(ours)))
        wal_site.sql("SELECT pg_reload_conf()")
    # PostgreSQL now archives the backlog itself: by marker where one is left, by wal_push where not.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        (last,), = wal_site.sql("SELECT last_archived_wal FROM pg_stat_archiver")[0:1]
        if last is not None and last >= names[-1]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("PostgreSQL did not archive the backlog")
    assert not list(spool.glob("*.ok"))  # every marker was claimed

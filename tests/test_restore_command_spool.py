"""The spool restore_command of a recovery (apps/backups/wal_config.restore_command), run by /bin/sh as
PostgreSQL runs it: from the data directory, `%f`/`%p` substituted. wal_fetch is stood in for by a script that
records each start, so the test sees which requests the shell answered alone."""
import os
import subprocess
from pathlib import Path

import pytest

from apps.backups.wal_config import FILLING, Invocation, restore_command

SEGMENT = "000000010000000000000003"


@pytest.fixture
def site(tmp_path):
    data, spool = tmp_path / "data", tmp_path / "spool"
    (data / "pg_wal").mkdir(parents=True)
    spool.mkdir()
    fetcher = tmp_path / "fetcher"
    fetcher.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/fetches"\nexit 1\n')
    fetcher.chmod(0o755)
    inv = Invocation(python=str(fetcher), manage="manage.py", env_file=str(tmp_path / "env"))
    command = restore_command("shop", inv, spool=str(spool))

    def ask(name: str, dest: str = "pg_wal/RECOVERYXLOG") -> int:
        # PostgreSQL's substitution: %f, %p, %% (the conf string's quoting is not in play here).
        line = command.replace("%f", name).replace("%p", dest).replace("%%", "%")
        return subprocess.run(["/bin/sh", "-c", line], cwd=data, timeout=30).returncode

    def fetches() -> list[str]:
        log = tmp_path / "fetches"
        return log.read_text().splitlines() if log.exists() else []

    return data, spool, ask, fetches


def test_a_spooled_segment_is_moved_in_and_a_request_for_it_again_is_served_from_pg_wal(site):
    data, spool, ask, fetches = site
    (spool / SEGMENT).write_bytes(b"w" * 4096)
    assert ask(SEGMENT) == 0
    restored = data / "pg_wal" / "RECOVERYXLOG"
    assert restored.read_bytes() == b"w" * 4096 and not (spool / SEGMENT).exists()
    assert (spool / f"{SEGMENT}.served").exists() and fetches() == []
    # The server keeps what it was given under the segment's name, and asks for the last one again at the end.
    restored.rename(data / "pg_wal" / SEGMENT)
    assert ask(SEGMENT) == 0
    assert restored.read_bytes() == b"w" * 4096 and fetches() == []
    # Gone from pg_wal meanwhile (a restartpoint removed it): fetched from the archive as before.
    restored.unlink()
    (data / "pg_wal" / SEGMENT).unlink()
    assert ask(SEGMENT) != 0
    assert len(fetches()) == 1 and fetches()[0].startswith(f"manage.py wal_fetch shop {SEGMENT} pg_wal/RECOVERYXLOG")


def test_a_file_in_pg_wal_that_this_recovery_was_not_served_is_never_used(site):
    """pg_wal holds the backup's own segments (the last one zero-filled past the backup's end): a request for
    one of them goes to the archive, never to that copy."""
    data, spool, ask, fetches = site
    (data / "pg_wal" / SEGMENT).write_bytes(b"\0" * 4096)
    assert ask(SEGMENT) != 0
    assert len(fetches()) == 1
    assert not (data / "pg_wal" / "RECOVERYXLOG").exists()


def test_a_file_marked_missing_is_refused_without_a_fetch_and_filling_waits_for_the_file(site):
    data, spool, ask, fetches = site
    (spool / "00000002.history.missing").touch()
    assert ask("00000002.history", "pg_wal/RECOVERYHISTORY") == 1 and fetches() == []
    # While the spool is being filled a request waits for its file instead of starting wal_fetch.
    (spool / FILLING).touch()
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 0.3; mv spool/x spool/" + SEGMENT], cwd=spool.parent)
    (spool / "x").write_bytes(b"late")
    try:
        assert ask(SEGMENT) == 0
    finally:
        proc.wait()
    assert (data / "pg_wal" / "RECOVERYXLOG").read_bytes() == b"late" and fetches() == []
    os.unlink(spool / FILLING)

"""Verification levels on real backups: each level finds what it should; the restore level restores into a
scratch cluster, compares row counts and content hashes (logical) or runs amcheck (physical), records its
figures, and leaves no scratch cluster behind, whether it passes, fails or is killed."""
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup, BackupArtifact
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.databases.services import save_target
from apps.verification.models import VerificationRun
from tests.helpers import V1

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _scratch(scratch_root):
    """Every test here uses its own scratch root."""
    return scratch_root


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def verify(backup_id: str, level: str) -> tuple[bool, str]:
    try:
        call_command("db_verify", backup_id, "--level", level, stdout=StringIO())
    except CommandError as exc:
        return False, str(exc)
    return True, ""


def take(target) -> Backup:
    job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM)
    backup = Backup.objects.get(pk=job.args["backup_id"])
    assert backup.status == "succeeded", backup.error
    return backup


def two_lookalike_targets(fresh_db):
    """Two databases with the same tables and row counts, different rows."""
    made = []
    for name, values in (("left", ["a", "b", "c"]), ("right", ["x", "y", "z"])):
        conn = fresh_db()
        with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
            c.execute("CREATE TABLE items (id int PRIMARY KEY, label text, at timestamptz DEFAULT '2026-01-01')")
            c.cursor().executemany("INSERT INTO items (id, label) VALUES (%s, %s)", list(enumerate(values)))
        t = DatabaseTarget(name=name, host=conn.host, port=conn.port, dbname=conn.dbname, user=conn.user,
                           sslmode="disable")
        made.append(save_target(target=t, actor=SYSTEM))
    return made


def test_each_level_detects_what_it_should(target, fresh_db, backup_root, settings, scratch_root):
    # A truncated artifact: `exists`.
    b = take(target)
    path = backup_root / b.artifacts.get().key
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    ok, error = verify(b.pk, "exists")
    assert not ok and "expected" in error
    # A flipped byte (same size): `exists` passes, `checksum` fails.
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    path.write_bytes(bytes(flipped))
    assert verify(b.pk, "exists")[0]
    ok, error = verify(b.pk, "checksum")
    assert not ok and "SHA-256" in error
    path.write_bytes(data)
    # Encrypted under a key that is no longer configured, bytes intact: `checksum` passes, `decrypt` fails.
    assert b.encryption_key_id == "test2"
    keys = settings.BACKUP_ENCRYPTION_KEYS
    settings.BACKUP_ENCRYPTION_KEYS = keys.split(",")[1]  # only test1 left
    assert verify(b.pk, "checksum")[0]
    ok, error = verify(b.pk, "decrypt")
    assert not ok and "test2" in error
    settings.BACKUP_ENCRYPTION_KEYS = keys
    # A dump of the wrong database (same tables and counts, other rows): `decrypt` passes, `restore` fails.
    left, right = two_lookalike_targets(fresh_db)
    good, wrong = take(left), take(right)
    assert good.content_hashes["public.items"] != wrong.content_hashes["public.items"]
    assert good.row_counts == wrong.row_counts == {"public.items": 3}
    src = wrong.artifacts.get()
    BackupArtifact.objects.filter(backup=good).update(**{f: getattr(src, f) for f in (
        "key", "size_raw", "size_stored", "sha256_raw", "sha256_stored", "compression", "cipher", "key_id")})
    assert verify(good.pk, "decrypt")[0]
    ok, error = verify(good.pk, "restore")
    assert not ok and "content" in error and "public.items" in error
    run = VerificationRun.objects.filter(backup=good, level="restore").get()
    assert run.result == "failed" and run.error.startswith("restore: restored content differs")
    good.refresh_from_db()
    assert (good.last_verified_level, good.last_verification_result) == ("restore", "failed")
    assert "public.items" in good.verification_error
    assert leftovers(scratch_root) == []


def test_a_restore_level_verification_of_a_real_backup_passes_and_leaves_nothing(target, api_as, scratch_root):
    b = take(target)
    assert b.content_hashes and set(b.content_hashes) <= set(b.row_counts)
    r = api_as("operator").post(f"{V1}/verification/verify/{b.pk}", {"level": "restore"}, format="json")
    assert r.status_code == 202, r.content
    job = api_as("operator").get(r.json()["links"]["job"]).json()
    assert job["status"] == "succeeded", job["error"]
    run = VerificationRun.objects.get(backup=b, level="restore")
    assert run.result == "passed" and run.error == "" and run.location is not None
    assert run.details["row_counts"] == b.row_counts and run.details["rows_compared"] == sum(b.row_counts.values())
    assert run.details["tables_hashed"] == len(b.content_hashes) > 0
    assert run.details["restore_seconds"] > 0 and run.details["cluster_seconds"] > 0 and run.seconds > 0
    assert run.bytes_read == b.artifacts.get().size_stored and run.details["bytes_restored"] == b.size_raw
    assert job["result"]["figures"][b.pk]["rows_compared"] == run.details["rows_compared"]
    assert leftovers(scratch_root) == []
    # The backup shows it, in the list and detail of the API.
    listed = api_as("viewer").get(f"{V1}/database/backups").json()["results"][0]
    assert listed["last_verified_level"] == "restore" and listed["last_verification_result"] == "passed"
    assert listed["last_verified_at"] and listed["verification_error"] == ""
    detail = api_as("viewer").get(f"{V1}/database/backups/{b.pk}").json()
    assert detail["last_verified_level"] == "restore"


def test_a_restore_that_fails_midway_leaves_no_scratch_cluster(target, backup_root, scratch_root):
    b = take(target)
    path = backup_root / b.artifacts.get().key
    data = bytearray(path.read_bytes())
    data[-50] ^= 0x01  # in the last frame: most of the dump has reached the scratch server when it fails
    path.write_bytes(bytes(data))
    ok, error = verify(b.pk, "restore")
    assert not ok and "the restore failed" in error and "authentication" in error
    assert leftovers(scratch_root) == []


def test_console_verify_offers_the_restore_level_and_shows_the_last_verification(admin_client, target):
    b = take(target)
    page = admin_client.get(f"/backups/{b.pk}/").content.decode()
    assert 'value="restore"' in page and "Last verified: never" in page
    r = admin_client.post(f"/backups/{b.pk}/verify/", {"level": "restore"})
    assert r.status_code == 302
    b.refresh_from_db()
    assert b.last_verified_level == "restore" and b.last_verification_result == "passed"
    page = admin_client.get(f"/backups/{b.pk}/").content.decode()
    assert "(restore," in page
    dashboard = admin_client.get("/").content.decode()
    assert "(restore)" in dashboard
    admin_list = admin_client.get("/admin/backups/backup/").content.decode()
    assert "(restore)" in admin_list and "verify_restore" in admin_list


def test_scheduled_verification_checks_all_and_restores_the_newest_per_target(target, scratch_root, settings):
    from apps.verification.tasks import verify_backups

    first, newest = take(target), take(target)
    jobs = verify_backups()
    assert len(jobs) == 2
    assert set(VerificationRun.objects.filter(level="checksum").values_list("backup_id", flat=True)) == {
        first.pk, newest.pk}
    assert list(VerificationRun.objects.filter(level="restore").values_list("backup_id", flat=True)) == [newest.pk]
    assert leftovers(scratch_root) == []

"""Restore-level verification of physical backups: the chain is rebuilt in a scratch directory, started on a free
port, checked with amcheck (heap and B-tree indexes of every database), stopped and removed."""
import psycopg
import pytest

from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup
from apps.core.services import SYSTEM
from apps.databases import sample_data
from apps.verification import services
from apps.verification.models import VerificationRun
from tests.helpers import physical_target, throwaway_cluster

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def phys():
    with throwaway_cluster("pgverify-") as cluster:
        with psycopg.connect(**cluster.conn().kwargs(), autocommit=True) as c:
            c.execute("CREATE DATABASE shop")
        sample_data.load(cluster.conn("shop"), rows=500)
        yield cluster




def take(target, **params) -> Backup:
    job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM, **params)
    backup = Backup.objects.get(pk=job.args["backup_id"])
    assert backup.status == "succeeded", backup.error
    return backup


def test_an_incremental_chain_restores_starts_and_passes_amcheck(phys, scratch_root):
    target = physical_target("phys", phys)
    full = take(target, method="physical")
    with psycopg.connect(**phys.conn("shop").kwargs(), autocommit=True) as c:
        c.execute("INSERT INTO tenants (full_name, email) SELECT 'n' || g, g || '@x.org' FROM generate_series(1, 50) g")
    incremental = take(target, kind="incremental")
    assert incremental.parent_id == full.pk

    [run] = services.verify_backup(backup=incremental, level="restore")
    assert run.result == "passed", run.error
    d = run.details
    assert d["chain"] == [full.pk, incremental.pk] and d["files"] > 0 and d["bytes_restored"] > 0
    assert "shop" in d["databases"] and "postgres" in d["databases"]
    assert d["indexes_checked"] > 50 and d["tables_checked"] > 50  # the catalogs too, in every database
    assert d["restore_seconds"] > 0 and d["start_seconds"] > 0 and d["amcheck_seconds"] > 0
    assert run.bytes_read == full.size_stored + incremental.size_stored
    assert list(scratch_root.iterdir()) == []
    incremental.refresh_from_db()
    assert (incremental.last_verified_level, incremental.last_verification_result) == ("restore", "passed")

    # A broken link fails the restore level (and still leaves nothing behind).
    from apps.storage import backends

    store = backends.for_location(full.storage_location)
    tar = full.artifacts.get(name="base.tar")
    store.delete(tar.key)
    [run] = services.verify_backup(backup=incremental, level="restore")
    assert run.result == "failed" and "the restore failed" in run.error and full.pk in run.error
    assert VerificationRun.objects.filter(backup=incremental, result="failed").count() == 1
    assert list(scratch_root.iterdir()) == []

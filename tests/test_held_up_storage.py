"""Security review, things that hold up today (keep it so): a full disk fails a backup cleanly (no partial file,
space given back, pg_dump stopped), and altered artifacts (frames dropped, replayed, spliced, relabelled as
final, appended) are refused, so nothing is restored from them."""
import math
import os
import re
import struct

import psutil
import pytest

from apps.backups.jobs import DatabaseBackupJob
from apps.backups.models import Backup, BackupArtifact, BackupStatus, Replica
from apps.core.services import SYSTEM
from apps.databases import catalog
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job
from apps.pipeline.artifact import ArtifactError, Decoder, Encoder
from apps.pipeline.keys import Keyring, generate_spec
from apps.storage.models import StorageLocation
from tests.helpers import V1

PAGE = 4096


# --- storage full ---------------------------------------------------------------------------------------


# small_fs: tests/conftest.py (a tmpfs of a given size, unmounted afterwards).


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _pg_dumps() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "pg_dump" in (p.name() or "")]


def _location(path) -> StorageLocation:
    return StorageLocation.objects.create(name="small", kind="local", path=str(path))


def _run_backup(target) -> tuple[Backup, Job]:
    job = DatabaseBackupJob.enqueue(target=target, fmt="custom", actor=SYSTEM)  # Q_SYNC: runs inline
    job.refresh_from_db()
    return Backup.objects.get(pk=job.args["backup_id"]), job


def _assert_failed_cleanly(backup, job, root, free_before) -> None:
    assert backup.status == BackupStatus.FAILED
    assert "No space left on device" in backup.error, backup.error
    assert job.status == "failed" and "No space left on device" in job.error, job.error
    assert not BackupArtifact.objects.filter(backup=backup).exists()
    assert not Replica.objects.filter(backup=backup).exists()
    assert _files(root) == []  # neither the artifact nor a .partial- file nor a manifest
    assert _free(root) == free_before  # the space is given back
    assert _pg_dumps() == []
    assert DatabaseTarget.objects.get(pk=backup.database_target_id).backup_lock == ""  # the lease is released


@pytest.mark.django_db
def test_backup_to_a_full_disk_fails_cleanly_and_the_next_one_works(target, small_fs, tmp_path):
    root = small_fs(64 * 1024)  # the sample database's dump is hundreds of KB, even compressed
    free_before = _free(root)
    target.storage_location = _location(root)
    target.save()

    backup, job = _run_backup(target)
    _assert_failed_cleanly(backup, job, root, free_before)

    # The target is not left locked or broken: with room again, the next backup succeeds.
    target.storage_location = StorageLocation.objects.create(name="roomy", kind="local", path=str(tmp_path / "roomy"))
    target.save()
    backup, job = _run_backup(target)
    assert backup.status == BackupStatus.SUCCEEDED, backup.error


@pytest.mark.django_db
def test_disk_full_at_the_manifest_removes_the_committed_artifact(target, small_fs, tmp_path):
    """Room for the artifact but not for the manifest written after it: the artifact, already committed under
    its final key, is removed again, so nothing half-made looks like a backup."""
    target.storage_location = StorageLocation.objects.create(name="probe", kind="local", path=str(tmp_path / "probe"))
    target.save()
    probe, _job = _run_backup(target)
    assert probe.status == BackupStatus.SUCCEEDED, probe.error
    artifact_pages = math.ceil(probe.size_stored / PAGE)
    if artifact_pages * PAGE - probe.size_stored < 64:  # a few bytes more next time would need another page
        pytest.skip("this run's artifact ends within 64 bytes of a page boundary")

    root = small_fs(artifact_pages * PAGE + 64 * PAGE)
    filler = root / "filler"
    filler.write_bytes(b"\xa5" * (_free(root) - artifact_pages * PAGE))  # leave room for the artifact alone
    assert _free(root) == artifact_pages * PAGE
    target.storage_location = _location(root)
    target.save()

    backup, job = _run_backup(target)
    filler.unlink()
    assert "artifact committed" in job.log, job.log  # the artifact fit: the manifest is what did not
    assert backup.status == BackupStatus.FAILED
    assert "No space left on device" in backup.error, backup.error
    assert _files(root) == []
    assert not BackupArtifact.objects.filter(backup=backup).exists()
    assert _pg_dumps() == []


@pytest.mark.django_db
def test_disk_full_through_the_api_answers_a_failed_job_with_a_clear_error(api_as, target, small_fs):
    root = small_fs(64 * 1024)
    target.storage_location = _location(root)
    target.save()
    operator = api_as("operator")
    r = operator.post(f"{V1}/database/backup/full", {"target": "sample"}, format="json")
    assert r.status_code == 202, r.content
    job = operator.get(r.json()["links"]["job"]).json()
    assert job["status"] == "failed" and "No space left on device" in job["error"]
    backup = operator.get(r.json()["links"]["backup"]).json()
    assert backup["status"] == "failed" and "No space left on device" in backup["error"]
    assert backup["artifacts"] == [] and backup["replicas"] == []
    assert _files(root) == []


# --- altered artifacts ------------------------------------------------------------------------------------

KEYRING = Keyring.parse(generate_spec("k1"))
FRAME = 8 * 1024


def _raw(n: int = 6) -> bytes:
    return b"".join(bytes([i]) * FRAME for i in range(n)) + b"tail"


def _encode(raw: bytes, keyring=KEYRING, compression_name: str = "none") -> tuple[Encoder, bytes]:
    enc = Encoder(compression_name=compression_name, keyring=keyring, frame_size=FRAME)
    return enc, b"".join(enc.encode([raw]))


def _split(stored: bytes) -> tuple[bytes, list[bytes]]:
    """(header, [frame, ...]) where each frame is its 5-byte head and its payload."""
    pos = 12 + struct.unpack(">I", stored[8:12])[0]
    header, frames = stored[:pos], []
    while pos < len(stored):
        _flag, length = struct.unpack(">BI", stored[pos:pos + 5])
        frames.append(stored[pos:pos + 5 + length])
        pos += 5 + length
    return header, frames


def _with_flag(frame: bytes, flag: int) -> bytes:
    return bytes([flag]) + frame[1:]


def _decode(stored: bytes, enc: Encoder | None = None, keyring=KEYRING) -> bytes:
    expected = {} if enc is None else {"expected_sha256_stored": enc.stats.sha256_stored,
                                       "expected_sha256_raw": enc.stats.sha256_raw}
    return b"".join(Decoder(keyring=keyring, **expected).decode([stored]))


def test_the_frame_surgery_below_is_sound():
    """Control: split and re-joined unchanged, an artifact still decodes (so each refusal below is the alteration)."""
    raw = _raw()
    enc, stored = _encode(raw)
    header, frames = _split(stored)
    assert len(frames) == 7 and frames[-1][0] == 1 and all(f[0] == 0 for f in frames[:-1])
    assert _decode(header + b"".join(frames), enc) == raw


@pytest.mark.parametrize("alteration", ["drop middle", "drop first", "replay", "reorder last two", "relabel final",
                                        "splice other artifact", "append frame", "append final copy"])
def test_altered_encrypted_artifacts_are_refused_even_without_recorded_checksums(alteration):
    raw = _raw()
    _enc, stored = _encode(raw)
    header, frames = _split(stored)
    _other_enc, other = _encode(raw)  # the same data and key: another data key and nonce prefix
    other_frames = _split(other)[1]
    altered = {
        "drop middle": frames[:2] + frames[3:],
        "drop first": frames[1:],
        "replay": frames[:3] + [frames[2]] + frames[3:],
        "reorder last two": frames[:-2] + [frames[-1], frames[-2]],
        # Cut after frame 2 and call it the end: the flag is authenticated with the frame.
        "relabel final": frames[:2] + [_with_flag(frames[2], 1)],
        "splice other artifact": frames[:3] + [other_frames[3]] + frames[4:],
        "append frame": frames + [other_frames[0]],
        "append final copy": frames + [frames[-1]],
    }[alteration]
    with pytest.raises(ArtifactError, match="fails authentication|after the final frame"):
        _decode(header + b"".join(altered))  # no expected checksums: the frames alone must tell


@pytest.mark.parametrize("alteration", ["drop middle", "replay", "swap", "flip", "append frame", "relabel final"])
def test_altered_unencrypted_artifacts_are_refused_with_the_recorded_checksums(alteration):
    raw = _raw()
    enc, stored = _encode(raw, keyring=None)  # uncompressed: every frame is raw bytes, the hardest case
    header, frames = _split(stored)
    flipped = bytearray(frames[1])
    flipped[100] ^= 0x01
    altered = {
        "drop middle": frames[:2] + frames[3:],
        "replay": frames[:3] + [frames[2]] + frames[3:],
        "swap": [frames[1], frames[0]] + frames[2:],
        "flip": [frames[0], bytes(flipped)] + frames[2:],
        "append frame": frames[:-1] + [frames[0], frames[-1]],
        "relabel final": frames[:2] + [_with_flag(frames[2], 1)],
    }[alteration]
    with pytest.raises(ArtifactError, match="SHA-256"):
        _decode(header + b"".join(altered), enc, keyring=None)


REFUSED = re.compile(r"fails authentication|SHA-256|bytes, expected|truncated|final frame")


@pytest.fixture
def multi_frame_target(db, fresh_db):
    """A target whose uncompressed dump spans several 1 MiB frames (the sample database fits in one)."""
    import psycopg

    from apps.databases.services import save_target

    conn = fresh_db(prefix="frames")
    with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
        c.execute("CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 3) AS v FROM generate_series(1, 40000) g")
    return save_target(target=DatabaseTarget(name="frames", host=conn.host, port=conn.port, dbname=conn.dbname,
                                             user=conn.user, sslmode="disable"), actor=SYSTEM)


@pytest.mark.django_db
@pytest.mark.parametrize("alteration", ["drop middle", "relabel final", "reorder"])
def test_a_stored_backup_with_altered_frames_fails_verification_and_restores_nothing(
    alteration, api_as, multi_frame_target, backup_root, fresh_db, settings
):
    settings.BACKUP_COMPRESSION = "none"  # the raw dump, cut into 1 MiB frames
    operator = api_as("operator")
    r = operator.post(f"{V1}/database/backup/full", {"target": "frames"}, format="json")
    backup = Backup.objects.get(pk=r.json()["backup_id"])
    assert backup.status == BackupStatus.SUCCEEDED, backup.error
    path = backup_root / backup.artifacts.get().key
    header, frames = _split(path.read_bytes())
    assert len(frames) >= 3
    altered = {
        "drop middle": frames[:1] + frames[2:],
        "relabel final": [_with_flag(frames[0], 1)],
        "reorder": [frames[1], frames[0]] + frames[2:],
    }[alteration]
    path.write_bytes(header + b"".join(altered))

    r = operator.post(f"{V1}/verification/verify/{backup.pk}", {"level": "decrypt"}, format="json")
    job = Job.objects.get(pk=r.json()["job_id"])
    assert job.status == "failed" and REFUSED.search(job.error), job.error

    dest = fresh_db(create=True, prefix="altered")
    r = api_as("admin").post(f"{V1}/database/backups/{backup.pk}/restore",
                             {"target": "frames", "dbname": dest.dbname}, format="json")
    assert r.status_code == 202, r.content
    job = Job.objects.get(pk=r.json()["job_id"])
    assert job.status == "failed", job.log
    assert REFUSED.search(job.error), job.error
    with catalog.connect(dest) as c:
        assert catalog.user_tables(c.cursor()) == []  # one transaction: nothing of it was kept

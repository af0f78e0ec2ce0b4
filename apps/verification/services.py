"""Verification: prove each replica of a backup is intact, at the level asked for."""
import time

from django.utils import timezone

from apps.backups.models import Backup, BackupFormat, BackupStatus, Replica, ReplicaStatus
from apps.core.errors import UserError
from apps.databases import selectors as databases
from apps.jobs.progress import JobContext, note
from apps.pipeline.artifact import ArtifactError, Decoder
from apps.pipeline.keys import KeyError_, configured_keyring
from apps.storage import backends
from apps.verification.models import VerificationLevel, VerificationResult, VerificationRun

VERIFIABLE = [BackupStatus.SUCCEEDED]
# Formats a restore cannot prove on their own (a data-only dump needs the schema first).
RESTORE_FALLBACK = [BackupFormat.DATA]


def request_verification(*, backup_ids: list[str], level: str) -> dict:
    """Validate a verification request; returns the arguments of its job (VerifyBackupsJob)."""
    if level not in VerificationLevel.values:
        raise UserError(f"Unknown verification level {level!r}; choose one of {', '.join(VerificationLevel.values)}.")
    if not backup_ids:
        raise UserError("There are no succeeded backups to verify.")
    statuses = dict(Backup.objects.filter(pk__in=backup_ids).values_list("pk", "status"))
    unknown = [pk for pk in backup_ids if pk not in statuses]
    if unknown:
        raise UserError(f"No backup with id {unknown[0]!r}.")
    unverifiable = [pk for pk, st in statuses.items() if st not in VERIFIABLE]
    if unverifiable:
        raise UserError(f"Backup {unverifiable[0]} is {statuses[unverifiable[0]]}; only succeeded backups can be verified.")
    return {"backup_ids": backup_ids, "level": level}


def verify_backup(*, backup: Backup, level: str, ctx: JobContext | None = None) -> list[VerificationRun]:
    """One run per replica (one per backup at the restore level); a failing replica is marked corrupt (or
    missing) and the run records why. The backup row keeps the newest outcome (`record_outcome`)."""
    if backup.status not in VERIFIABLE:
        raise UserError(f"Backup {backup.pk} is {backup.status}; only succeeded backups can be verified.")
    if level == VerificationLevel.RESTORE:
        if backup.format in RESTORE_FALLBACK:
            note(ctx, f"{backup.pk}: a {backup.format}-only dump cannot be restored on its own; verified at the "
                      "decrypt level instead")
            return verify_backup(backup=backup, level=VerificationLevel.DECRYPT, ctx=ctx)
        runs = [_verify_restore(backup=backup, ctx=ctx)]
    else:
        runs = []
        replicas = backup.replicas.select_related("location").exclude(status=ReplicaStatus.DELETED)
        for replica in replicas:
            runs.append(_verify_replica(backup=backup, replica=replica, level=level, ctx=ctx))
    if runs:
        record_outcome(backup=backup, level=level, runs=runs)
    return runs


def record_outcome(*, backup: Backup, level: str, runs: list[VerificationRun]) -> None:
    """The backup's last verified time, level and result; a failure keeps what failed (the alert reads it)."""
    failed = [r for r in runs if r.result == VerificationResult.FAILED]
    error = "; ".join(f"{r.location.name if r.location else '?'}: {r.error}" for r in failed)[:4000]
    Backup.objects.filter(pk=backup.pk).update(
        last_verified_at=max(r.created_at for r in runs), last_verified_level=level,
        last_verification_result=VerificationResult.FAILED if failed else VerificationResult.PASSED,
        verification_error=error,
    )


def _verify_restore(*, backup: Backup, ctx: JobContext | None) -> VerificationRun:
    from apps.verification import restore_check

    started = time.monotonic()
    try:
        found = restore_check.check(backup, ctx)
    except Exception as exc:  # e.g. initdb or the scratch directory failed: the check itself could not run
        found = restore_check.RestoreCheck(problems=[f"the restore check could not run: {exc}"])
    run = VerificationRun.objects.create(
        backup=backup, location=found.location, level=VerificationLevel.RESTORE,
        result=VerificationResult.FAILED if found.problems else VerificationResult.PASSED,
        bytes_read=found.bytes_read, seconds=round(time.monotonic() - started, 3), details=found.details,
        error="restore: " + "; ".join(found.problems) if found.problems else "",
        job=ctx.job if ctx is not None else None,
    )
    note(ctx, f"{backup.pk} restore: {run.result}" + (f" ({run.error})" if run.error else ""))
    return run


def _verify_replica(*, backup: Backup, replica: Replica, level: str, ctx: JobContext | None) -> VerificationRun:
    backend = backends.for_location(replica.location)
    started = time.monotonic()
    bytes_read = 0
    problems: list[str] = []
    if backup.manifest_key and backend.stat(backup.manifest_key) is None:
        problems.append(f"manifest {backup.manifest_key} is missing")
    for artifact in backup.artifacts.all():
        info = backend.stat(artifact.key)
        if info is None:
            problems.append(f"{artifact.key} is missing")
            continue
        if info.size != artifact.size_stored:
            problems.append(f"{artifact.key} is {info.size} bytes, expected {artifact.size_stored}")
            continue
        if level == VerificationLevel.DECRYPT:
            start = bytes_read
            found, size = _decrypt_and_parse(
                backup=backup, artifact=artifact, backend=backend,
                on_progress=(lambda n: ctx.progress(start + n)) if ctx is not None else None,
            )
            problems += found
            bytes_read += size
        elif level == VerificationLevel.CHECKSUM:
            start = bytes_read
            digest, size = backend.sha256(
                artifact.key, on_progress=(lambda n: ctx.progress(start + n)) if ctx is not None else None
            )
            bytes_read += size
            if digest != artifact.sha256_stored:
                problems.append(f"{artifact.key} SHA-256 is {digest}, expected {artifact.sha256_stored}")
    passed = not problems
    run = VerificationRun.objects.create(
        backup=backup, location=replica.location, level=level,
        result=VerificationResult.PASSED if passed else VerificationResult.FAILED,
        bytes_read=bytes_read, seconds=round(time.monotonic() - started, 3),
        details={"artifacts": backup.artifacts.count()}, error="; ".join(problems),
        job=ctx.job if ctx is not None else None,
    )
    if passed:
        update = {"status": ReplicaStatus.PRESENT, "last_error": ""}
        if level in (VerificationLevel.CHECKSUM, VerificationLevel.DECRYPT):  # decrypt checks the SHA-256 too
            update["checksum_verified_at"] = timezone.now()
    else:
        update = {"status": ReplicaStatus.CORRUPT, "last_error": run.error}
    Replica.objects.filter(pk=replica.pk).update(**update)
    if ctx is not None:
        ctx.log(f"{backup.pk}@{replica.location.name} {level}: {run.result}" + (f" ({run.error})" if run.error else ""))
    return run


def _decrypt_and_parse(*, backup: Backup, artifact, backend, on_progress) -> tuple[list[str], int]:
    """Decode the whole artifact with the configured keys and read the dump inside it.

    Proves more than the checksum: the master key is still configured, every frame
    authenticates, the data decompresses (to the recorded raw SHA-256 where one is recorded: a physical
    backup's tars record none, zstd's content checksum proves them), and the dump
    parses with the per-table row counts recorded at backup time.
    """
    decoder = Decoder.for_record(artifact, keyring=configured_keyring())  # header held to the catalog too
    counter = databases.dump_row_counter(fmt=backup.format)
    done = 0
    try:
        for raw in decoder.decode(backend.get_stream(artifact.key)):
            if counter is not None:
                counter.feed(raw)
            done += len(raw)
            if on_progress is not None:
                on_progress(done)
    except (ArtifactError, KeyError_) as exc:
        return [f"{artifact.key}: {exc}"], decoder.stats.size_stored
    counts = counter.result() if counter is not None else None
    if counter is not None and counts is None:
        return [f"{artifact.key} decrypts, but its content is not a readable pg_dump {backup.format} stream"], \
            decoder.stats.size_stored
    if counts is not None and backup.row_counts and counts != backup.row_counts:
        differ = sorted(k for k in set(counts) | set(backup.row_counts) if counts.get(k) != backup.row_counts.get(k))
        return [f"{artifact.key}: row counts in the dump differ from the catalog for {', '.join(differ[:5])}"], \
            decoder.stats.size_stored
    return [], decoder.stats.size_stored

"""Scratch directories for restore-level verification: created per run, always removed, leftovers swept.

Each one is VERIFY_SCRATCH_ROOT/verify-<job id>-<random>, holding an `owner` file (the process,
host:pid:start:pidns, and the job). The run removes it in a `finally` (stopping any server started in
it); a run killed outright cannot, so `sweep()` — called at the start of every verification job and when
the jobs app settles a dead job — stops and removes every scratch directory whose process is gone or
whose job is no longer running. A server started there keeps running after its parent is killed
(pg_ctl detaches it); the sweep stops it with `pg_ctl stop -m immediate` before removing its files.
"""
import json
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from apps.databases import clusters
from apps.jobs import liveness
from apps.jobs.models import Job, JobStatus

log = logging.getLogger(__name__)
PREFIX = "verify-"
OWNER = "owner"


def root() -> Path:
    path = Path(settings.VERIFY_SCRATCH_ROOT)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # the postgres user must reach the clusters inside
    return path


@contextmanager
def directory(job_id: str | None) -> Iterator[Path]:
    """A new scratch directory owned by the server user, removed (with any server in it) on the way out."""
    base = root() / f"{PREFIX}{job_id or 'nojob'}-{secrets.token_hex(4)}"
    base.mkdir(mode=0o755)
    (base / OWNER).write_text(json.dumps({"process": liveness.this_process(), "job": job_id or ""}))
    clusters.give_to_server_user(base)
    try:
        yield base
    finally:
        remove(base)


def _data_dirs(base: Path) -> list[Path]:
    return [p.parent for p in base.rglob("postmaster.pid")]


def remove(base: Path) -> None:
    """Stop every server running from a data directory under `base`, then delete it all."""
    for data in _data_dirs(base):
        result = subprocess.run(
            clusters.as_server_user([f"{clusters.server_bin_dir()}/pg_ctl", "-D", str(data), "-m", "immediate",
                                     "-w", "stop"]), capture_output=True, text=True)
        if result.returncode != 0 and (data / "postmaster.pid").exists():
            log.warning("Scratch server in %s did not stop: %s", data, result.stderr.strip()[-500:])
    shutil.rmtree(base, ignore_errors=True)


def _abandoned(base: Path) -> bool:
    try:
        owner = json.loads((base / OWNER).read_text())
    except (OSError, ValueError):
        owner = {}
    process, job_id = owner.get("process", ""), owner.get("job", "")
    if process and liveness.is_dead(process):
        return True
    if job_id:
        status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        if status is not None and status != JobStatus.RUNNING:
            return True  # its job is settled: nothing will come back for it
    return not process and not (base / OWNER).exists() and _older_than_a_day(base)


def _older_than_a_day(base: Path) -> bool:
    import time

    try:
        return time.time() - base.stat().st_mtime > 86400
    except OSError:
        return False


def sweep(*, job_id: str | None = None) -> list[str]:
    """Remove the scratch directories of dead runs (or of one settled job); returns what was removed."""
    removed = []
    base = Path(settings.VERIFY_SCRATCH_ROOT)
    if not base.is_dir():
        return removed
    for entry in sorted(base.iterdir()):
        if not entry.is_dir() or not entry.name.startswith(PREFIX):
            continue
        if job_id is not None and not entry.name.startswith(f"{PREFIX}{job_id}-"):
            continue
        if job_id is not None or _abandoned(entry):
            log.warning("Removing the scratch directory %s left by a verification that did not finish", entry)
            remove(entry)
            removed.append(entry.name)
    return removed


def settle_dead_job(sender=None, job=None, **_kwargs) -> None:
    """jobs.signals.job_abandoned: a dead verification job's scratch cluster goes with it."""
    if job is not None and job.type == "verify.backups" and os.path.isdir(settings.VERIFY_SCRATCH_ROOT):
        sweep(job_id=job.pk)

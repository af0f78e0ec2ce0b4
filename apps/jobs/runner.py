"""Job types as classes, after NetBox's JobRunner.

Each job type is a subclass of `JobRunner` in its app's `jobs.py`, with a `name`
(stored as Job.type), `prepare()` (validate the request, record the Job row and
whatever it works on) and `run()` (the work, calling services). Callers use the
class: `DatabaseBackupJob.enqueue(target=t, actor=a)` hands the job to the
django-q2 cluster, `run_now(...)` runs it in this process. Subclasses register
themselves when their module is imported; the jobs app imports every app's
`jobs.py` once at start-up.
"""
import logging
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from apps.core.errors import JobFailed, UserError
from apps.core.services import Actor
from apps.jobs import liveness, progress, services
from apps.jobs.signals import job_finished
from apps.jobs.models import Job, JobStatus
from apps.jobs.progress import JobContext

log = logging.getLogger(__name__)


class _Rehearsal(Exception):
    """Rolls back a request prepared only to check it (see JobRunner.request)."""


class JobRunner:
    name: ClassVar[str] = ""
    _types: ClassVar[dict[str, type["JobRunner"]]] = {}
    # Two-person approval (apps/approvals): the action name of this job's destructive requests ("" = never
    # gated). `approval()` says which requests are destructive and what to store; `from_approval()` turns the
    # stored parameters back into `prepare()` keywords when a second admin approves.
    approval_action: ClassVar[str] = ""
    # The alert rule types whose outcome this job's end can change, evaluated as it ends (apps/monitoring/hooks.py);
    # None: every type. The others wait for the next health check, which evaluates them all.
    alert_types: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.name:
            return
        known = JobRunner._types.get(cls.name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ImproperlyConfigured(f"Two job runners are named {cls.name!r}: {known} and {cls}.")
        JobRunner._types[cls.name] = cls
        if cls.approval_action:
            from apps.approvals import registry

            registry.register(cls.approval_action, cls._execute_approved)

    def __init__(self, job: Job, ctx: JobContext):
        self.job, self.ctx = job, ctx

    def run(self, **runtime: Any) -> dict:
        """Do the work; `runtime` holds what must not be stored (e.g. a password). Returns the job's result."""
        raise NotImplementedError

    # --- two-person approval -------------------------------------------------------------------------

    @classmethod
    def approval(cls, **params: Any) -> tuple[str, dict] | None:
        """(summary, JSON parameters without secrets) when this request is destructive, else None."""
        return None

    @classmethod
    def from_approval(cls, params: dict) -> dict:
        """The `prepare()` keywords of stored approval parameters."""
        raise NotImplementedError

    @classmethod
    def _execute_approved(cls, params: dict, actor: Actor) -> dict:
        return {"job_id": cls.enqueue(actor=actor, **cls.from_approval(params)).pk}

    @classmethod
    def _gate(cls, actor: Actor, params: dict) -> None:
        if not cls.approval_action:
            return
        from django.db import transaction

        from apps.approvals import gate

        if not gate.holds(cls.approval_action, actor) or (gated := cls.approval(**params)) is None:
            return
        # Checked first, as if it ran (then rolled back): a request that would be refused is refused now, not
        # after a second admin approved it.
        try:
            with transaction.atomic():
                cls.prepare(actor=actor, **params)
                raise _Rehearsal
        except _Rehearsal:
            pass
        summary, stored = gated
        gate.check(action=cls.approval_action, actor=actor, params=stored, summary=summary)

    # --- requesting work ---------------------------------------------------------------------------

    @classmethod
    def prepare(cls, *, actor: Actor, **params: Any) -> Job:
        """Validate the request and record the job; by default its parameters are its arguments."""
        return cls.create_job(args=params, actor=actor)

    @classmethod
    def create_job(cls, *, args: dict, actor: Actor) -> Job:
        return services.create_job(job_type=cls.name, args=args, actor=actor)

    @classmethod
    def request(cls, *, actor: Actor, **params: Any) -> Job:
        """Settle jobs whose process died (they may hold what this one needs, e.g. a target's lease), then
        prepare this one."""
        services.reap_dead_jobs()
        cls._gate(actor, params)
        return cls.prepare(actor=actor, **params)

    @classmethod
    def enqueue(cls, *, actor: Actor, **params: Any) -> Job:
        """Record the job and hand it to the django-q2 cluster (inline when Q_CLUSTER['sync'] is on)."""
        return submit(cls.request(actor=actor, **params))

    @classmethod
    def run_now(cls, *, actor: Actor, runtime: dict | None = None, **params: Any) -> Job:
        """Record the job and run it in this process (management commands)."""
        return execute(cls.request(actor=actor, **params), **(runtime or {}))

    @staticmethod
    def for_type(job_type: str) -> type["JobRunner"]:
        try:
            return JobRunner._types[job_type]
        except KeyError:
            raise ImproperlyConfigured(f"No job runner is named {job_type!r}.") from None


def submit(job: Job) -> Job:
    from django_q.tasks import async_task  # imported here: management commands that never queue start faster

    task_id = async_task("apps.jobs.tasks.run_job", job.pk, task_name=f"{job.type}:{job.pk}")
    Job.objects.filter(pk=job.pk).update(task_id=task_id or "")
    job.refresh_from_db()
    return job


def execute(job: Job, **runtime: Any) -> Job:
    """Run a queued job here, with a heartbeat; the row ends succeeded or failed whatever the runner raises."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, worker=liveness.this_process()
    )
    job.refresh_from_db()
    if not claimed:
        log.warning("Job %s is %s, not queued; not running it again.", job.pk, job.status)
        return job
    ctx = JobContext(job)
    from apps.approvals.gate import trusted  # a running job was let through (or approved) when requested

    try:
        with ctx.beating(), trusted(), liveness.running_job(job.pk):
            result = JobRunner.for_type(job.type)(job, ctx).run(**runtime) or {}
    except Exception as exc:
        if isinstance(exc, UserError):
            log.warning("Job %s (%s) failed: %s", job.pk, job.type, exc)
        else:
            log.error("Job %s (%s) failed: %s", job.pk, job.type, exc, exc_info=True)
        progress.drop_broken_connection()  # a metadata server restart must not keep the job "running"
        ctx.log(f"failed: {exc}")
        services.finish(job=ctx.job, status=JobStatus.FAILED, error=str(exc) or type(exc).__name__,
                        result=exc.result if isinstance(exc, JobFailed) else {})
    else:
        ctx.log("succeeded")
        services.finish(job=ctx.job, status=JobStatus.SUCCEEDED, result=result)
    job.refresh_from_db()
    # Listeners (alert rules) must not change how the job ended: their errors are logged, never raised.
    for receiver, error in job_finished.send_robust(sender=Job, job=job):
        if isinstance(error, Exception):
            log.error("A job_finished receiver (%s) failed for job %s: %s", receiver, job.pk, error)
    return job

"""Point-in-time recovery: base backup → data directory → recovery settings → replay to the target → promoted.

`request_pitr` checks the request and records a RecoveryRun (which base backup, where, which
target); `run_pitr` does the work and records what replay reached and how long each part took.
With `table`, the recovered cluster is a scratch one: the table is copied back into the live
database and the scratch cluster is stopped and removed.
"""
import logging
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from apps.core.errors import UserError
from apps.core.services import Actor, audit
from apps.databases import clusters, identifiers
from apps.databases import lsn as lsns
from apps.databases.connection import PgConn
from apps.databases.models import DatabaseTarget
from apps.jobs.progress import JobContext
from apps.recovery import recovery_settings, selectors
from apps.recovery.models import RecoveryKind, RecoveryRun, RecoveryStatus
from apps.recovery.targets import RecoveryTarget

log = logging.getLogger(__name__)

# What the server logs when replay ends (lc_messages is forced to C in the recovery settings).
_STOPPED = re.compile(r"(recovery stopping .*|last completed transaction was at log time .*)$")
_NOT_REACHED = "recovery ended before configured recovery target was reached"
_READY = "database system is ready to accept connections"
LOG_POLL = 0.01  # seconds between reads of the recovering server's log (a read of what it wrote since the last)
RUNNING_CHECK = 0.5  # seconds between checks that it still runs (pg_ctl status), after its first 2 s


def request_pitr(*, target: DatabaseTarget, goal: RecoveryTarget, pgdata: str, actor: Actor,
                 port: int | None = None, start: bool = False, table: str | None = None,
                 parent_must_exist: bool = True) -> RecoveryRun:
    """Validate a recovery and record it (pending); the caller attaches the job (and, with
    `parent_must_exist=False`, creates the data directory's parent before it runs)."""
    path = Path(pgdata)
    if not path.is_absolute():
        raise UserError("The data directory must be an absolute path.")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path} exists and is not an empty directory; recovery never writes over data.")
    if parent_must_exist and not path.parent.is_dir():
        raise UserError(f"{path.parent} does not exist; create it first.")
    if port is not None and not 1 <= port <= 65535:
        raise UserError("The port must be between 1 and 65535.")
    if port is not None and start and not clusters.port_is_free(port):
        raise UserError(f"Port {port} is in use on this machine; choose another or leave it out.")
    if table:
        schema, name = identifiers.check_table(table)
        table = f"{schema or 'public'}.{name}"
    point_lsn = _restore_point_lsn(target, goal)
    base = selectors.base_backup_for(target, goal, restore_point_lsn=point_lsn)
    _check_archive(target=target, base=base, goal=goal, restore_point_lsn=point_lsn)
    _restore_command(target)  # the environment file the server's restore_command needs is known, before any work
    with transaction.atomic():
        run = RecoveryRun.objects.create(
            database_target=target, kind=RecoveryKind.TABLE if table else RecoveryKind.PITR,
            target_time=goal.time, target_lsn=goal.lsn, target_name=goal.name, inclusive=goal.inclusive,
            base_backup=base, pgdata=str(path), port=port, start=start or bool(table), table=table or "",
        )
        audit(actor=actor, action="recovery.requested", obj=run,
              details={"target": target.name, "goal": goal.describe(), "base_backup": base.pk, "pgdata": str(path),
                       "table": table or ""})
    return run


def run_pitr(*, run: RecoveryRun, ctx: JobContext | None = None, into: PgConn | None = None,
             rename: str | None = None) -> RecoveryRun:
    """Carry out a pending recovery; the run ends succeeded or failed, and a failed one leaves no data directory."""
    if not RecoveryRun.objects.filter(pk=run.pk, status=RecoveryStatus.PENDING).update(
            status=RecoveryStatus.RUNNING, started_at=timezone.now()):
        raise UserError(f"Recovery {run.pk} is not pending; not running it again.")
    run.refresh_from_db()
    pgdata = Path(run.pgdata)
    cluster = None
    try:
        say = ctx.log if ctx else log.info
        say(f"restoring base backup {run.base_backup_id} into {pgdata}, fetching the WAL to replay beside it")
        t0 = time.monotonic()
        spool = _wal_spool(pgdata)
        restore_command = _restore_command(run.database_target, spool=spool)
        from apps.backups.wal_config import FILLING

        (spool / FILLING).touch()  # restore_command waits for files while the spool is being filled
        background = ThreadPoolExecutor(max_workers=1)
        spooling = background.submit(_fill_spool, run, spool)
        try:
            _restore_base(run.base_backup, pgdata, ctx)
            restore_seconds = time.monotonic() - t0
            port = run.port or clusters.free_port()
            recovery_settings.write(pgdata, recovery_settings.recovery_settings(
                restore_command=restore_command, target=run.goal, port=port))
            fields = {"restore_seconds": restore_seconds, "port": port}
            if run.start:
                # Started at once: the WAL still being fetched is waited for by restore_command, file by file.
                say(f"starting the recovered cluster on port {port}; replaying WAL to {run.target_description}")
                cluster = clusters.LocalCluster(base=pgdata.parent, port=port, data_dir=pgdata,
                                                log_file=pgdata.parent / f"{pgdata.name}.log")
                t1 = time.monotonic()
                fields["reached"] = start_and_wait_promoted(cluster)
                fields["replay_seconds"] = time.monotonic() - t1
                say(f"recovered: {fields['reached']}")
        finally:
            background.shutdown(wait=True)
            try:
                say(f"{spooling.result()} WAL files fetched ahead")
            except Exception as exc:  # the server then fetched each file itself: slower, as safe
                say(f"fetching WAL ahead stopped ({exc}); the server fetched the rest file by file")
        if run.table:
            fields["table_destination"] = _copy_back(run, port=port, into=into, rename=rename, say=say)
            cluster.stop(mode="fast")  # a scratch cluster: only the table was wanted
            cluster = None
            shutil.rmtree(pgdata)
        if run.start:
            shutil.rmtree(spool, ignore_errors=True)  # promoted: no more WAL is fetched
        RecoveryRun.objects.filter(pk=run.pk).update(status=RecoveryStatus.SUCCEEDED, finished_at=timezone.now(),
                                                     error="", **fields)
    except BaseException as exc:
        if cluster is not None:
            cluster.stop(mode="immediate")
        shutil.rmtree(pgdata, ignore_errors=True)
        shutil.rmtree(_wal_spool(pgdata), ignore_errors=True)
        RecoveryRun.objects.filter(pk=run.pk).update(status=RecoveryStatus.FAILED, finished_at=timezone.now(),
                                                     error=str(exc) or type(exc).__name__)
        raise
    run.refresh_from_db()
    return run


def start_and_wait_promoted(cluster: clusters.LocalCluster, *, timeout: float = 6 * 3600) -> str:
    """Start a cluster in recovery and wait until it is promoted; what replay reached, from the server log.

    The server's log is the only place that says where replay stopped, and why it failed: a
    target beyond the archived WAL makes PostgreSQL stop with "recovery ended before configured
    recovery target was reached".
    """
    cluster.log.touch()
    clusters.give_to_server_user(cluster.log)
    offset = cluster.log.stat().st_size
    cluster.start_detached()
    started = checked = time.monotonic()
    log = _LogReader(cluster.log, offset, (_READY, _NOT_REACHED))
    while True:
        text = log.read()
        if log.seen(_READY):
            cluster.wait_ready()
            reached = [m.group(1) for line in text.splitlines() if (m := _STOPPED.search(line))]
            return "; ".join(reached) or "replayed all archived WAL"
        now = time.monotonic()
        elapsed = now - started
        # Whether the server still runs is asked of pg_ctl (two processes) at most every RUNNING_CHECK seconds,
        # not at every poll of the log: those processes would take CPU from the replay they wait for.
        stopped = False
        if elapsed > 2 and now - checked >= RUNNING_CHECK:
            checked = now
            stopped = not cluster.is_running()
        if stopped:
            text = log.read()  # what it wrote before it exited
        if log.seen(_NOT_REACHED):
            cluster.stop(mode="immediate")
            raise UserError(
                "Recovery ended before it reached the target: the archived WAL stops earlier (an archiving gap, or a "
                f"target later than the newest archived WAL). Server log: {_tail(text)}")
        if stopped:
            raise UserError(f"The recovered cluster stopped during recovery. Server log: {_tail(text)}")
        if elapsed > timeout:
            raise UserError(f"Recovery did not finish within {timeout:.0f} s. Server log: {_tail(text)}")
        time.sleep(LOG_POLL)  # time to ready is what a recovery is measured by


class _LogReader:
    """The server log from `offset` on, read as it grows: each read takes only the whole lines written since the
    last (a recovery of hours logs a line per segment, and is read every LOG_POLL), and looks for the `watched`
    messages in them; `seen` says whether one has appeared in any read so far."""

    def __init__(self, path: Path, offset: int, watched: tuple[str, ...]):
        self.path, self.pos, self.text, self.watched = path, offset, "", watched
        self._partial = b""  # the start of a line not yet ended
        self._hits: set[str] = set()

    def read(self) -> str:
        """Everything logged since `offset` (whole lines)."""
        with open(self.path, "rb") as fh:
            fh.seek(self.pos)
            data = fh.read()
        self.pos += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        data, self._partial = data[:cut], data[cut:]
        new = data.decode(errors="replace")
        self.text += new
        self._hits.update(m for m in self.watched if m in new)
        return self.text

    def seen(self, message: str) -> bool:
        return message in self._hits


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def recovered_conn(target: DatabaseTarget, port: int) -> PgConn:
    """A connection to a cluster recovered on this machine from `target`: its database and user, locally."""
    return replace(PgConn.for_target(target), host="127.0.0.1", port=port, sslmode="disable")


def _copy_back(run: RecoveryRun, *, port: int, into: PgConn | None, rename: str | None, say) -> str:
    from apps.recovery import table_copy

    schema, table = run.table.split(".", 1)
    target = run.database_target
    live = into or PgConn.for_target(target)
    scratch = recovered_conn(target, port)
    if rename:
        identifiers.check_name(rename, what="table")
    say(f"copying {run.table} from the recovered cluster into {live.redacted()}"
        + (f" as {schema}.{rename}" if rename else " in place"))
    result = table_copy.copy_table(source=scratch, dest=live, schema=schema, table=table, rename=rename)
    say(f"copied {result['rows']} rows into {result['table']}")
    return f"{live.host}:{live.port}/{live.dbname} {result['table']} ({result['rows']} rows)"


# --- pieces provided by the physical backup and WAL archive modules -------------------------------------------------

def _restore_base(backup, pgdata: Path, ctx) -> None:
    from apps.backups import physical_restore

    # Not read twice: every frame is still authenticated while extracting, and a corrupt link leaves nothing
    # (the partial directory is removed), which is all a recovery needs; time to recover is what counts here.
    physical_restore.restore_data_directory(backup, pgdata, ctx=ctx, verify_first=False)


def _fill_spool(run: RecoveryRun, spool: Path) -> int:
    from django.db import connection

    from apps.recovery import wal_spool

    try:
        target = run.database_target
        names, missing = wal_spool.needed(target, run.base_backup, run.goal,
                                          restore_point_lsn=_restore_point_lsn(target, run.goal))
        return wal_spool.fill(target=target, names=names, missing=missing, spool=spool)
    finally:
        connection.close()


def _wal_spool(pgdata: Path) -> Path:
    """Where wal_fetch puts the segments it fetches ahead: beside the data directory, the server user's only."""
    return pgdata.parent / f".{pgdata.name}.walspool"


def _restore_command(target: DatabaseTarget, spool: Path | None = None) -> str:
    """wal_fetch as the recovered server's restore_command, with this process's interpreter and environment file;
    with a spool, segments are fetched ahead (wal_config.restore_command)."""
    from apps.backups import wal_config

    if spool is not None:
        shutil.rmtree(spool, ignore_errors=True)  # never reuse what an earlier run left: start empty
        spool.mkdir(mode=0o700)
        clusters.give_to_server_user(spool)
    return wal_config.restore_command(target.name, wal_config.Invocation.current(),
                                      spool=str(spool) if spool else None)


def _restore_point_lsn(target: DatabaseTarget, goal: RecoveryTarget) -> int | None:
    """The LSN of a named restore point, as wal_push catalogued it (the newest, if the name was used twice)."""
    if not goal.name:
        return None
    from apps.backups.models import RestorePoint

    found = [lsns.parse(p.lsn) for p in RestorePoint.objects.filter(database_target=target, name=goal.name)]
    if not found:
        raise UserError(f"No restore point named {goal.name!r} is in the WAL archived for {target.name} (restore "
                        "points are catalogued when the segment holding them is archived; run "
                        "SELECT pg_switch_wal() on the source to archive the current one).")
    return max(found)


def _check_archive(*, target: DatabaseTarget, base, goal: RecoveryTarget, restore_point_lsn: int | None) -> None:
    """Refuse a goal the archived WAL cannot reach from `base`, before anything is written."""
    from apps.backups import wal_selectors

    try:
        reach = wal_selectors.reach_from(target, base)
    except wal_selectors.Unreachable as exc:
        raise UserError(f"Base backup {base.pk} cannot be recovered: {exc}.") from None
    gap = (f" Segments {reach.gap.first_missing} to {reach.gap.last_missing} are missing from the archive."
           if reach.gap else "")
    end = f"the archived WAL from base backup {base.pk} ends at LSN {lsns.to_text(reach.latest_lsn)}"
    if goal.time and (reach.latest_at is None or goal.time >= reach.latest_at):
        last = reach.latest_at.isoformat() if reach.latest_at else "none after the backup"
        raise UserError(
            f"{goal.describe()} is beyond what can be recovered: {end}, and its last commit is at {last}.{gap} "
            "Choose an earlier time, or give no target to recover everything archived.")
    target_lsn = goal.lsn_value if goal.lsn else restore_point_lsn
    if target_lsn is not None and target_lsn >= reach.latest_lsn:
        raise UserError(f"{goal.describe()} is beyond what can be recovered: {end}.{gap}")

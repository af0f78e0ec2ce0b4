"""Who runs a job, and whether that process still exists.

An identity is "host:pid:start:pidns". `start` is the process start time in clock
ticks since boot (/proc/PID/stat field 22), so a pid reused after a crash does not
pass for the original holder; `pidns` names the PID namespace, so two containers
that share a host name (host networking) never judge each other's pids.

`current_job()` names the job this thread runs (set by the runner around `run()`), so what a job leaves behind
when it is killed (a local location's `.partial-<job id>-…` upload file) can be found and removed once it is
settled as dead.
"""
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current_job: ContextVar[str] = ContextVar("current_job", default="")


def current_job() -> str:
    """The id of the job running in this thread (or context); "" outside a job."""
    return _current_job.get()


@contextmanager
def running_job(job_id: str) -> Iterator[None]:
    token = _current_job.set(job_id)
    try:
        yield
    finally:
        _current_job.reset(token)


def _start_ticks(pid: int) -> str:
    """Start time of a running process; "" when there is none (no such pid, or a zombie: killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return ""
    return fields[19]


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return ""


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}:{_pid_namespace()}"


def describe(identity: str) -> str:
    host, pid = (identity.split(":") + ["", ""])[:2]
    return f"pid {pid} on {host}"


def is_dead(identity: str) -> bool:
    """True only when the process is known to be gone: same host and PID namespace, and its pid unused or reused.

    A holder elsewhere cannot be checked from here; its heartbeat going stale decides.
    """
    host, pid, start, pidns = (identity.split(":") + ["", "", "", ""])[:4]
    if not host or host != socket.gethostname() or not pid.isdigit() or pidns != _pid_namespace():
        return False
    if not os.path.isdir("/proc"):
        return False  # no way to tell here: rely on the heartbeat
    current = _start_ticks(int(pid))
    return not current or (bool(start) and current != start)

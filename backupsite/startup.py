"""Start-up trims applied by settings.py, before Django loads the apps (so in every process: manage.py commands,
archive_command's wal_push/wal_fetch, the job worker, the web server).

django-q2's `conf` module is imported by its app config, so by every process, and imports its optional helpers
at module level: psutil (whose import reads /proc and builds its tables, ~25 ms here), prometheus_client (with
http.server, wsgiref, urllib.request) and croniter (with dateutil). Only the cluster (qcluster), cron schedules
and the admin's schedule form use them. So `django_q.conf` is imported with those three unavailable (it then
binds None, as it does where they are not installed) and the names are then bound to `Deferred` stand-ins that
import the real thing on first use. Where a helper is not installed the name stays None, as django-q expects.
django-q's behaviour is the same: the stand-ins are true, and forward attribute access and calls.

croniter 7 calls `platform.architecture()` at import to detect a 32-bit interpreter, and that runs
`file -b <python>` in a subprocess. croniter checks the pointer size first, which already answers it, so during
that one import the file probe answers "unknown" (`architecture()` then reports the pointer size, as it does
where `file` is missing). croniter's result, and everything after the import, is the same.

Two more things conf does at import that only the cluster needs: `from importlib.metadata import entry_points`
(importlib.metadata brings zipfile, csv and importlib.resources; entry_points is called only when an error
reporter is configured) gets a function that imports importlib.metadata when called; and `QSIZE =
Queue().qsize() == 0` (importing django_q.queues, i.e. multiprocessing's queues and connections, then building a
queue with its pipe, semaphores and a ctypes shared counter, to learn whether the platform has sem_getvalue)
becomes a `DeferredCheck` that makes the same test on first use (only
`if Conf.QSIZE:` in the cluster's status reads it).

django-axes' package sets `__version__ = version("django-axes")` at import, which alone imports importlib.metadata
and scans sys.path; it gets a `LazyVersion` that reads the same metadata when shown (axes only logs it). So do
psycopg's and psycopg-binary's version files (psycopg is imported by every command that connects to a cluster)
and python-ulid's package (imported at the first new id).

numpy (the page deltas of physical backups and restores) loads OpenBLAS, which starts a thread per CPU at import
and keeps buffers for each: nothing here does linear algebra, so `OPENBLAS_NUM_THREADS` defaults to 1 (set in the
environment before any import; an operator's own value stands). numpy's import then costs 0.13 s of CPU instead
of 0.26 s on the 2-CPU bench machine, and no BLAS thread is left to spin beside a restore's extraction processes.

Each of these is bound to one module's import (a meta path finder wraps that module's loader once); nothing
else sees a stand-in. tests/test_startup.py checks the list of modules a start-up imports and that each
stand-in behaves as the real thing.
"""
import gc
import importlib
import importlib.machinery
import os
import sys
import types

# name in django_q.conf -> (module to import, attribute of it or None, top-level package to block while conf loads)
DEFERRED = {
    "psutil": ("psutil", None, "psutil"),
    "prometheus_multiprocess": ("prometheus_client.multiprocess", None, "prometheus_client"),
    "croniter": ("croniter", "croniter", "croniter"),
}


def import_croniter() -> None:
    """Import croniter without platform.architecture()'s `file` subprocess."""
    if "croniter" in sys.modules:
        return
    import platform
    probe = getattr(platform, "_syscmd_file", None)
    if probe is None:  # another Python: croniter imports as it is
        return
    platform._syscmd_file = lambda target, default="": default
    try:
        importlib.import_module("croniter")
    except ImportError:
        pass  # optional for django-q, which then refuses cron schedules itself
    finally:
        platform._syscmd_file = probe


class Deferred:
    """A module (or one attribute of it) imported on first use: attribute access and calls go to it."""

    def __init__(self, module: str, attr: str | None = None):
        self.__dict__.update(_module=module, _attr=attr, _target=None)

    def _load(self):
        target = self.__dict__["_target"]
        if target is None:
            if self._module == "croniter":
                import_croniter()
            target = importlib.import_module(self._module)
            if self._attr:
                target = getattr(target, self._attr)
            self.__dict__["_target"] = target
        return target

    def __getattr__(self, name):
        return getattr(self._load(), name)

    def __call__(self, *args, **kwargs):
        return self._load()(*args, **kwargs)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<deferred {self._module}{'.' + self._attr if self._attr else ''}>"


class DeferredCheck:
    """A truth value computed on first use."""

    def __init__(self, check):
        self._check, self._value = check, None

    def __bool__(self) -> bool:
        if self._value is None:
            self._value = bool(self._check())
        return self._value

    def __repr__(self) -> str:
        return f"<deferred check {self._value}>"


def _entry_points(*args, **kwargs):
    """importlib.metadata.entry_points, importing importlib.metadata when called."""
    return importlib.import_module("importlib.metadata").entry_points(*args, **kwargs)


def _metadata_stand_in(**names) -> types.ModuleType:
    """Stands for importlib.metadata while django_q.conf or axes runs: entry_points is deferred (and the given
    names); any other name (should another module imported meanwhile ask for one) loads the real module, which
    then replaces the stand-in."""
    stand_in = types.ModuleType("importlib.metadata")
    stand_in.__dict__.update(names)

    def __getattr__(name):
        if name.startswith("__"):  # the import system's probes (`__path__`: not a package)
            raise AttributeError(name)
        if sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]
        return getattr(importlib.import_module("importlib.metadata"), name)

    stand_in.__dict__.setdefault("entry_points", _entry_points)
    stand_in.__getattr__ = __getattr__
    return stand_in


def _queue_has_qsize() -> bool:
    """django_q.conf's own test: does a queue's qsize() work here (sem_getvalue)?"""
    from django_q.queues import Queue
    try:
        return Queue().qsize() == 0
    except (NotImplementedError, OSError):
        return False


class _NoQueue:
    """Stands for django_q.queues.Queue while conf runs, so its QSIZE test builds no queue."""

    def qsize(self) -> int:
        return 0


class LazyVersion:
    """A distribution's version string, read from its metadata when first shown (str, repr, ==, format)."""

    def __init__(self, distribution: str):
        self._distribution, self._value = distribution, None

    def __str__(self) -> str:
        if self._value is None:
            self._value = importlib.import_module("importlib.metadata").version(self._distribution)
        return self._value

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __getattr__(self, name):  # the str's methods (`psycopg.__version__.split(" ")` in Django's backend)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(str(self), name)


def _exec_django_q_conf(exec_module, module) -> None:
    """Runs django_q.conf's module code with the optional helpers blocked, then binds the stand-ins."""
    blocked = [name for (_, _, name) in DEFERRED.values() if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # `import name` raises ImportError, which conf catches
    queues = None
    if "django_q.queues" not in sys.modules:  # its import is multiprocessing's queues, connections, sockets
        queues = sys.modules["django_q.queues"] = types.ModuleType("django_q.queues")
        queues.Queue = _NoQueue
    try:
        with _metadata_deferred():
            exec_module(module)
    finally:
        if queues is not None and sys.modules.get("django_q.queues") is queues:
            del sys.modules["django_q.queues"]
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    if queues is not None:
        module.Queue = Deferred("django_q.queues", "Queue")
        module.Conf.QSIZE = DeferredCheck(_queue_has_qsize)
    for attr, (target, sub, package) in DEFERRED.items():
        if package in blocked and getattr(module, attr, None) is None \
                and importlib.machinery.PathFinder.find_spec(package) is not None:
            setattr(module, attr, Deferred(target, sub))


def _exec_with_lazy_version(exec_module, module) -> None:
    """django-axes' package, and psycopg's and psycopg-binary's version files, do `__version__ =
    version(DISTRIBUTION)` (importlib.metadata, and a scan of sys.path for the distribution) at import; axes only
    logs it (AXES_VERBOSE), psycopg shows it in messages and Django's PostgreSQL backend reads it (a str method:
    LazyVersion forwards those). python-ulid's package does the same (`from importlib.metadata import version`).
    psycopg is imported by every backup, PITR and restore that connects, ulid by every command that records a
    row: importlib.metadata and its scans cost 15-30 ms of each such command."""
    with _metadata_deferred(version=LazyVersion):
        exec_module(module)


class _metadata_deferred:
    """While the block runs, importlib.metadata (if not imported yet) is a stand-in (see _metadata_stand_in)."""

    def __init__(self, **names):
        self._names, self._stand_in = names, None

    def __enter__(self):
        if "importlib.metadata" not in sys.modules:
            self._stand_in = sys.modules["importlib.metadata"] = _metadata_stand_in(**self._names)

    def __exit__(self, *exc):
        if self._stand_in is not None and sys.modules.get("importlib.metadata") is self._stand_in:
            del sys.modules["importlib.metadata"]


# module -> function(exec_module, module) that runs its code
WRAPPED = {"django_q.conf": _exec_django_q_conf, "axes": _exec_with_lazy_version,
           "psycopg.version": _exec_with_lazy_version, "psycopg_binary.version": _exec_with_lazy_version,
           "ulid": _exec_with_lazy_version}


class _WrappedLoader:
    def __init__(self, loader, run):
        self._loader, self._run = loader, run

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._run(self._loader.exec_module, module)


class _Finder:
    """Meta path finder that only wraps the loaders of the modules in WRAPPED (each once)."""

    def __init__(self):
        self.pending = {name for name in WRAPPED if name not in sys.modules}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _WrappedLoader(spec.loader, WRAPPED[fullname])
        return spec


def trim() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        finder = _Finder()
        if finder.pending:
            sys.meta_path.insert(0, finder)


_gc_held = False


def hold_gc() -> None:
    """Turn the cyclic garbage collector off until release_gc() (the apps are loaded; see admin_app.py).
    Leaves it alone if something else turned it off."""
    global _gc_held
    if not _gc_held and gc.isenabled():
        gc.disable()
        _gc_held = True


def release_gc() -> None:
    """Freeze what start-up made (later collections skip it) and turn the collector back on."""
    global _gc_held
    if _gc_held:
        _gc_held = False
        gc.freeze()
        gc.enable()


def freeze_for_exit() -> None:
    """Called as a command ends: freeze every object, so the full collection the interpreter runs while it shuts
    down does not walk the whole heap again (40-50 ms of CPU after a backup, every wal_push and wal_fetch too;
    docs/BENCHMARKS.md). Objects are still freed by their reference counts as modules are torn down; only cyclic
    garbage made by the command and never collected is left to the operating system, as Python allows at exit.
    Nothing of ours depends on it: storage writes are closed and committed explicitly before a command ends."""
    gc.freeze()

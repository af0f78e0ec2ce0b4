"""Start-up trims applied by settings.py, before Django loads the apps (so in every process: manage.py commands,
archive_command's wal_push/wal_fetch, the job worker, the web server).

django-q2's `conf` module is imported by its models, so by every process, and imports its optional helpers at
module level (croniter, psutil, prometheus_client). croniter 7 calls `platform.architecture()` at import to
detect a 32-bit interpreter, and that runs `file -b <python>` in a subprocess: a fork and an exec in every
process. croniter checks the pointer size first, which already answers it, so during that one import the file
probe answers "unknown" (`architecture()` then reports the pointer size, as it does where `file` is missing).
croniter's result, and everything after the import, is the same.
"""
import importlib
import platform
import sys


def import_croniter() -> None:
    """Import croniter without platform.architecture()'s `file` subprocess."""
    if "croniter" in sys.modules:
        return
    probe = getattr(platform, "_syscmd_file", None)
    if probe is None:  # another Python: croniter imports as it is, when django-q imports it
        return
    platform._syscmd_file = lambda target, default="": default
    try:
        importlib.import_module("croniter")
    except ImportError:
        pass  # optional for django-q, which then refuses cron schedules itself
    finally:
        platform._syscmd_file = probe


def trim() -> None:
    import_croniter()

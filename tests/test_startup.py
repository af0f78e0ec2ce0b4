"""Start-up trims (backupsite/startup.py, backupsite/admin_app.py): same behaviour, less work.

Each check runs in a fresh interpreter, as a management command does: the test process itself has long imported
most of these modules (pytest, its plugins, other tests).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Imported by none of our commands at start-up; a new module-level import of any of these (or of a module that
# imports them) puts it back into every command. Prefixes: "psutil" also stands for "psutil._pslinux".
NOT_AT_START_UP = [
    # django-q's optional helpers and what its conf module imported for the cluster alone
    "psutil", "prometheus_client", "croniter", "dateutil", "importlib.metadata", "django_q.queues",
    "multiprocessing.queues", "ctypes",
    # the apps' admin modules (imported by the URLconf) and what the API / the backups import
    "apps.backups.admin", "apps.databases.admin", "apps.monitoring.admin", "django_q.admin",
    "rest_framework.views", "rest_framework.generics", "drf_spectacular.openapi", "rest_framework_simplejwt",
    "psycopg", "zstandard", "cryptography", "boto3", "botocore", "azure", "google.cloud", "requests",
    "whitenoise.storage",
]


def run(code: str, *argv: str, env: dict | None = None) -> str:
    env = dict(os.environ if env is None else env, DEBUG="1", DATABASE_URL="sqlite:///:memory:",
               DJANGO_SETTINGS_MODULE="backupsite.settings")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True,
                          cwd=str(ROOT), env=env).stdout


def test_manage_py_help_imports_none_of_the_heavy_modules():
    code = ("import contextlib, io, json, runpy, sys\n"
            "sys.argv = ['manage.py', 'help']\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    runpy.run_path('manage.py', run_name='__main__')\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    modules = json.loads(run(code))
    assert "django_q.conf" in modules and "apps.backups.models" in modules  # it did start
    loaded = [m for m in modules if any(m == p or m.startswith(p + ".") for p in NOT_AT_START_UP)]
    assert loaded == []


def test_django_q_helpers_load_on_first_use_and_behave_as_the_real_ones():
    code = r"""
import json, sys, django
django.setup()
import django_q.conf as conf
from django_q import models
out = {"before": sorted(m for m in ("psutil", "croniter", "prometheus_client", "importlib.metadata",
                                    "django_q.queues") if m in sys.modules)}
out["truthy"] = all(bool(x) for x in (conf.psutil, conf.croniter, conf.prometheus_multiprocess, models.croniter))
out["cpu_count"] = conf.psutil.cpu_count()
import psutil
out["cpu_count_real"] = psutil.cpu_count()
from django_q.cluster import prometheus_multiprocess
import prometheus_client.multiprocess
out["mark_process_dead"] = prometheus_multiprocess.mark_process_dead is prometheus_client.multiprocess.mark_process_dead
from django.utils import timezone
s = models.Schedule(func="math.floor", schedule_type=models.Schedule.CRON, cron="*/5 * * * *")
nxt = s.calculate_next_run()
out["next_run_minute"] = nxt.minute % 5 == 0 and nxt.second == 0 and nxt > timezone.now()
models.validate_cron("*/5 * * * *")
try:
    models.validate_cron("not a cron line")
    out["bad_cron"] = "accepted"
except Exception as exc:
    out["bad_cron"] = type(exc).__name__
out["croniter_class"] = conf.croniter.expand == sys.modules["croniter"].croniter.expand
out["qsize"] = bool(conf.Conf.QSIZE)
from django_q.queues import Queue
out["qsize_real"] = Queue().qsize() == 0
out["queue_class"] = conf.Queue().__class__ is Queue
eps = conf.entry_points(group="console_scripts")
import importlib.metadata
out["entry_points"] = sorted(e.name for e in eps) == sorted(
    e.name for e in importlib.metadata.entry_points(group="console_scripts"))
import axes
out["axes_version"] = [str(axes.__version__), f"{axes.__version__}", importlib.metadata.version("django-axes")]
print(json.dumps(out))
"""
    out = json.loads(run(code))
    assert out["before"] == []  # nothing loaded until used
    assert out["truthy"]
    assert out["cpu_count"] == out["cpu_count_real"] and out["cpu_count"] >= 1
    assert out["mark_process_dead"]
    assert out["bad_cron"] == "ValidationError"
    assert out["croniter_class"]
    assert out["next_run_minute"]
    assert out["qsize"] == out["qsize_real"]
    assert out["queue_class"]
    assert out["entry_points"]
    v = out["axes_version"]
    assert v[0] == v[1] == v[2] and v[0][0].isdigit()


def test_croniter_is_imported_without_the_file_probe_and_gives_the_plain_verdict():
    code = ("import subprocess, sys, platform, django\n"
            "calls = []\n"
            "real = subprocess.Popen.__init__\n"
            "def spy(self, *a, **k):\n"
            "    calls.append(a[0] if a else k.get('args'))\n"
            "    real(self, *a, **k)\n"
            "subprocess.Popen.__init__ = spy\n"
            "django.setup()\n"
            "import django_q.conf as conf\n"
            "conf.croniter.expand('* * * * *')\n"
            "print(len(calls), platform._syscmd_file.__name__, sys.modules['croniter.croniter'].OVERFLOW32B_MODE)\n")
    n_calls, probe, verdict = run(code).split()
    assert n_calls == "0"
    assert probe == "_syscmd_file"  # restored
    plain = subprocess.run([sys.executable, "-c", "import sys, croniter; "
                            "print(sys.modules['croniter.croniter'].OVERFLOW32B_MODE)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert verdict == plain


def test_admin_modules_load_with_the_urlconf_and_for_the_system_checks():
    code = ("import django, sys\n"
            "django.setup()\n"
            "from django.contrib import admin\n"
            "from django.core import checks\n"
            "before = len(admin.site._registry)\n"
            "errors = checks.run_checks(tags=[checks.Tags.admin])\n"
            "from apps.backups.models import Backup\n"
            "print(before, admin.site.is_registered(Backup), len(errors))\n")
    before, registered, n_errors = run(code).split()
    assert (before, registered, n_errors) == ("0", "True", "0")
    code = ("import django\n"
            "django.setup()\n"
            "from django.contrib import admin\n"
            "from django.urls import reverse\n"
            "from apps.databases.models import DatabaseTarget\n"
            "print(reverse('admin:databases_databasetarget_changelist'), admin.site.is_registered(DatabaseTarget))\n")
    assert run(code).split() == ["/admin/databases/databasetarget/", "True"]


def test_the_garbage_collector_is_off_while_the_apps_load_and_on_afterwards():
    # manage.py holds it from its first line; the admin app's config releases it once every model is loaded.
    code = ("import gc\n"
            "print(gc.isenabled(), gc.get_freeze_count() > 10000, gc.get_count()[2] < 5)\n")
    env = dict(os.environ, DEBUG="1", DATABASE_URL="sqlite:///:memory:")
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(ROOT), env=env).stdout.split()[-3:]
    assert out == ["True", "True", "True"]
    # django.setup() alone (pytest-django, scripts): the admin config's creation holds it, its ready() releases it
    code = ("import gc, django\n"
            "django.setup()\n"
            "print(gc.isenabled(), gc.get_freeze_count() > 10000)\n")
    assert run(code).split() == ["True", "True"]
    # a collector someone else turned off stays off
    code = ("import gc, django\n"
            "gc.disable()\n"
            "django.setup()\n"
            "print(gc.isenabled(), gc.get_freeze_count())\n")
    assert run(code).split() == ["False", "0"]


def test_a_command_freezes_the_heap_before_the_interpreter_shuts_down():
    # manage.py freezes every object as the command ends (also when it fails), so the interpreter's last full
    # collection does not walk the heap again: an atexit callback (run after that) sees more objects frozen than
    # the command body did, and the failing command's exit code is kept.
    code = ("import atexit, gc\n"
            "body = gc.get_freeze_count()\n"
            "atexit.register(lambda: print('frozen', gc.get_freeze_count() > body + 100, flush=True))\n"
            "junk = [object() for _ in range(1000)]\n")
    env = dict(os.environ, DEBUG="1", DATABASE_URL="sqlite:///:memory:")
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(ROOT), env=env).stdout.split()
    assert out[-2:] == ["frozen", "True"]
    failed = subprocess.run([sys.executable, "manage.py", "db_backup", "--kind", "weekly"], capture_output=True,
                            text=True, cwd=str(ROOT), env=env)
    assert failed.returncode == 2 and "invalid choice: 'weekly'" in failed.stderr


def test_psycopg_and_ulid_import_without_reading_their_version_and_show_the_real_one():
    code = r"""
import json, sys, django
django.setup()
import psycopg, psycopg_binary
from psycopg import _cmodule
from apps.core.ids import new_id
new_id()
out = {"metadata_at_import": "importlib.metadata" in sys.modules}
import importlib.metadata, ulid
out["ulid"] = [str(ulid.__version__), importlib.metadata.version("python-ulid")]
out["psycopg"] = [str(psycopg.__version__), f"{psycopg.__version__}", importlib.metadata.version("psycopg")]
out["binary"] = [str(psycopg_binary.__version__), str(_cmodule.__version__), importlib.metadata.version("psycopg-binary")]
from django.db.backends.postgresql.base import psycopg_version
out["django"] = [list(psycopg_version()), psycopg.__version__.split(".")[0]]
print(json.dumps(out))
"""
    out = json.loads(run(code))
    assert out["metadata_at_import"] is False  # no version file read the distribution's metadata
    assert out["ulid"][0] == out["ulid"][1] and out["ulid"][0][0].isdigit()
    assert out["psycopg"][0] == out["psycopg"][1] == out["psycopg"][2] and out["psycopg"][0][0].isdigit()
    assert out["binary"][0] == out["binary"][1] == out["binary"][2]
    assert ".".join(map(str, out["django"][0])).startswith(out["psycopg"][2][:3])  # Django's str methods work
    assert out["django"][1] == out["psycopg"][2].split(".")[0]


def test_numpy_starts_no_blas_threads_unless_the_operator_asks_for_them():
    code = ("import os, django\n"
            "django.setup()\n"
            "import numpy\n"
            "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    assert run(code, env=env).split() == ["1", "1"]  # the main thread alone
    # An operator's own setting stands.
    assert run(code, env=dict(env, OPENBLAS_NUM_THREADS="2")).split()[0] == "2"

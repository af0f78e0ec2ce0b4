"""Start-up trims (backupsite/startup.py): same behaviour, less work."""
import platform
import subprocess
import sys

from backupsite import startup


def test_croniter_is_imported_without_the_file_probe_and_the_probe_is_restored():
    # settings.py ran startup.trim() before the apps were loaded: croniter is in, platform is untouched.
    assert "croniter" in sys.modules
    assert platform._syscmd_file.__name__ == "_syscmd_file"
    # croniter's verdict is the one a plain import (with the `file` subprocess) gives on this interpreter.
    code = "import sys, croniter; print(sys.modules['croniter.croniter'].OVERFLOW32B_MODE)"
    plain = subprocess.run([sys.executable, "-c", code],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert str(sys.modules["croniter.croniter"].OVERFLOW32B_MODE) == plain


def test_trimmed_import_runs_no_subprocess():
    code = ("import subprocess, sys\n"
            "calls = []\n"
            "real = subprocess.Popen.__init__\n"
            "def spy(self, *a, **k):\n"
            "    calls.append(a[0] if a else k.get('args'))\n"
            "    real(self, *a, **k)\n"
            "subprocess.Popen.__init__ = spy\n"
            "import backupsite.startup as s\n"
            "s.trim()\n"
            "import croniter\n"
            "print(len(calls))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(startup.__file__).rsplit("/backupsite/", 1)[0]).stdout.strip()
    assert out == "0"

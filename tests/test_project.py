"""Project-level guarantees: committed migrations, production-safe settings, no shell in subprocesses."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_migrations_are_committed():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def run_settings(**env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "BACKUP_ENCRYPTION_KEYS")}
    base.update(DJANGO_SETTINGS_MODULE="backupsite.settings", **env)
    code = "import django; django.setup(); from django.conf import settings; print('DEBUG', settings.DEBUG)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True)


def test_production_refuses_to_start_without_secret_key():
    result = run_settings()
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_encryption_keys():
    result = run_settings(SECRET_KEY="x" * 50)
    assert result.returncode != 0 and "BACKUP_ENCRYPTION_KEYS must be set" in result.stderr


def test_production_starts_with_both_and_debug_is_off(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("k1:" + "A" * 43 + "=\n")
    result = run_settings(SECRET_KEY="x" * 50, BACKUP_ENCRYPTION_KEYS_FILE=str(keys))
    assert result.returncode == 0, result.stderr
    assert "DEBUG False" in result.stdout


def test_no_subprocess_goes_through_a_shell():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "apps").rglob("*.py")
        if "shell=True" in path.read_text() or "os.system(" in path.read_text()
    ]
    assert offenders == []


def test_system_checks_pass():
    # The operational commands skip them for speed, so the suite runs them once.
    call_command("check", fail_level="WARNING")


def test_cluster_start_moves_off_a_port_taken_meanwhile():
    import socket

    from tests.helpers import throwaway_cluster

    with throwaway_cluster("pgport-", start=False) as cluster:
        blocker = socket.socket()
        try:
            blocker.bind(("127.0.0.1", cluster.port))  # someone takes the port between initdb and start
            blocker.listen()
            taken = cluster.port
            cluster.start()
            assert cluster.port != taken and cluster.is_running()
        finally:
            blocker.close()

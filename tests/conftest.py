"""Fixtures shared by every test: a real PostgreSQL 15 cluster per session, sample data, storage roots."""
import uuid

import pytest

from django.contrib.auth.models import User

from apps.databases import sample_data
from tests.helpers import create_database, drop_database, jwt_client, make_user, throwaway_cluster

# Session-scoped emulators of S3, Azure Blob and GCS, and the cloud_location factory.
pytest_plugins = ["tests.emulators"]


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway cluster for the whole session (started as the postgres user when we are root)."""
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def wal_site():
    """A cluster archiving (archive_mode on, archive_timeout 2 s) through wal_push to target `walsrc` of a site
    usable by the postgres user: see tests/wal_site.py. One per test module: tests may break and mend it."""
    from tests.wal_site import archiving_site

    with archiving_site() as site:
        yield site


@pytest.fixture(scope="session")
def source_db(pg_cluster):
    """The sample property database; tests must not change it (use fresh_db for writes)."""
    create_database(pg_cluster, "sample")
    sample_data.load(pg_cluster.conn("sample"), rows=2000)
    return pg_cluster.conn("sample")


@pytest.fixture
def fresh_db(pg_cluster):
    """Factory: a new empty database name on the session cluster, dropped after the test."""
    names = []

    def make(create: bool = True, prefix: str = "t"):
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        if create:
            create_database(pg_cluster, name)
        names.append(name)
        return pg_cluster.conn(name)

    yield make
    for name in names:
        drop_database(pg_cluster, name)


@pytest.fixture(autouse=True)
def clear_cache():
    """Throttle counters live in the cache: each test starts with none (all tests log in from 127.0.0.1)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests create users and log in a lot: a cheap hasher keeps them fast (never in production)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_as(db):
    """api_as("operator") -> APIClient authenticated by JWT as a user with that role (None: no role)."""

    def make(role: str | None, username: str | None = None):
        name = username or f"{role or 'norole'}-user"
        if not User.objects.filter(username=name).exists():
            make_user(name, role)
        return jwt_client(name)

    return make


@pytest.fixture(autouse=True)
def backup_root(settings, tmp_path):
    """Every test writes backups to its own directory."""
    root = tmp_path / "backups"
    settings.BACKUP_LOCAL_ROOT = root
    return root


@pytest.fixture
def scratch_root(settings):
    """Where restore-level verifications build their scratch clusters: a fresh directory the postgres user can
    reach (not pytest's 0700 tmp_path), removed afterwards."""
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="verify-scratch-"))
    root.chmod(0o755)
    settings.VERIFY_SCRATCH_ROOT = root
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def target(db, source_db):
    from apps.core.services import SYSTEM
    from apps.databases.services import save_target
    from apps.databases.models import DatabaseTarget

    t = DatabaseTarget(name="sample", host=source_db.host, port=source_db.port, dbname=source_db.dbname,
                       user=source_db.user, sslmode="disable")
    return save_target(target=t, actor=SYSTEM, password="not-needed-trust-auth")



# --- Production profile: PostgreSQL metadata pass, Redis --------------------------------------------------------

# Modules that `make test` runs a second time with the metadata database on PostgreSQL (`--pg-metadata -m pgmeta`):
# models, jobs and their leases, request-side overlap checks, API lists. Tests elsewhere opt in with
# `pytestmark = pytest.mark.pgmeta`.
PGMETA_MODULES = {"test_api_backups", "test_backup_steps", "test_backup_deletion", "test_monitoring_api", "test_smoke"}


def pytest_addoption(parser):
    parser.addoption("--pg-metadata", action="store_true",
                     help="Metadata (Django) database on the session PostgreSQL cluster instead of SQLite")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module is not None and item.module.__name__.rpartition(".")[2] in PGMETA_MODULES:
            item.add_marker(pytest.mark.pgmeta)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, django_db_modify_db_settings_parallel_suffix):
    """With --pg-metadata: the test database is created on the session cluster (pg_cluster), as in production."""
    if not request.config.getoption("--pg-metadata"):
        return
    from django.conf import settings
    from django.db import connections

    cluster = request.getfixturevalue("pg_cluster")
    conn = cluster.conn()
    default = settings.DATABASES["default"]
    default.clear()
    default.update({"ENGINE": "django.db.backends.postgresql", "NAME": "meta", "USER": conn.user,
                    "HOST": conn.host, "PORT": conn.port, "PASSWORD": "", "CONN_MAX_AGE": 0,
                    "CONN_HEALTH_CHECKS": True})
    connections["default"].close()
    del connections.settings  # cached: re-read from settings.DATABASES
    del connections["default"]


@pytest.fixture
def redis_server():
    """A private redis-server (no persistence) on a free port: its URL, e.g. for REDIS_URL. Stopped afterwards."""
    import shutil
    import tempfile

    from apps.databases.clusters import free_port
    from tests.emulators import server

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/setup.sh installs it)")
    workdir = tempfile.mkdtemp(prefix="redis-")
    port = free_port()
    try:
        with server([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", workdir, "--loglevel", "warning"], port, "redis-server"):
            yield f"redis://127.0.0.1:{port}/0"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def small_fs(tmp_path):
    """mount(size) -> a directory on a fresh tmpfs of that size (needs root), unmounted afterwards: a disk that
    really fills."""
    import subprocess

    mounted = []

    def mount(size: int):
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                              check=False, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)

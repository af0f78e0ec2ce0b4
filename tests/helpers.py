"""Helpers shared by the tests (fixtures live in conftest.py)."""
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.models import Group, User
from psycopg import sql
from rest_framework.test import APIClient

from apps.databases import clusters
from apps.databases.clusters import LocalCluster, free_port, server_bin_dir

PASSWORD = "correct-horse-battery-staple-42"
V1 = "/v1/backup-recovery"


@contextmanager
def throwaway_cluster(prefix: str = "pgtest-", *, start: bool = True):
    """An initdb'ed (and started) PostgreSQL cluster in a fresh temp dir, destroyed afterwards.

    Skips the test when the server binaries are not installed.
    """
    try:
        server_bin_dir()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)  # not pytest's tmp_path (mode 0700): the postgres user must reach the data directory
    cluster = LocalCluster(base=base / "cluster", port=free_port())
    try:
        cluster.initdb()
        if start:
            cluster.start()
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def create_database(cluster: LocalCluster, name: str) -> None:
    clusters.create_database(cluster.conn(), name)


def drop_database(cluster: LocalCluster, name: str) -> None:
    clusters.drop_database(cluster.conn(), name)


def table_contents(conn, table: str) -> list[tuple]:
    """Every row of a table, ordered by its first column: to compare contents, not only counts."""
    schema, _, name = table.rpartition(".")
    ident = sql.Identifier(schema or "public", name)
    with psycopg.connect(**conn.kwargs()) as c:
        return c.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(ident)).fetchall()


def make_user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def jwt_client(username: str) -> APIClient:
    """A client holding an access token obtained through the real token endpoint."""
    client = APIClient()
    r = client.post("/v1/auth/token/", {"username": username, "password": PASSWORD}, format="json")
    assert r.status_code == 200, r.content
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {r.json()['access']}")
    return client


@contextmanager
def flipped_byte(backend, key: str, at: float = 0.5):
    """The stored object `key` with one byte flipped (same size: only authentication or a checksum can tell) for
    the block's duration; put back as it was afterwards."""
    saved = backend.get_bytes(key)
    data = bytearray(saved)
    data[int(len(data) * at)] ^= 0x01
    backend.put_bytes(key, bytes(data))
    try:
        yield
    finally:
        backend.put_bytes(key, saved)


def physical_target(name: str, cluster: LocalCluster, dbname: str = "shop"):
    """A saved target on a throwaway cluster whose data directory the tests can read (physical by default, so
    incrementals read the files)."""
    from apps.core.services import SYSTEM
    from apps.databases.models import DatabaseTarget
    from apps.databases.services import save_target

    return save_target(target=DatabaseTarget(
        name=name, host="127.0.0.1", port=cluster.port, dbname=dbname, user="postgres", sslmode="disable",
        default_method="physical", data_directory=str(cluster.data)), actor=SYSTEM)

"""Security review, things that hold up today (keep it so): malformed JSON is a 400 JSON error, `../` and other
odd ids in paths are 404 (never 500), and names starting with `-` never reach a command line as options."""
import psycopg
import pytest
from psycopg import sql
from rest_framework.test import APIClient

from apps.backups.models import Backup, BackupStatus
from apps.databases import catalog
from apps.jobs.models import Job
from tests.helpers import V1, create_database, drop_database, table_contents

pytestmark = pytest.mark.django_db

TARGETS = f"{V1}/database/targets/"
LOCATIONS = f"{V1}/storage/locations/"


def _no_raise(client: APIClient) -> APIClient:
    client.raise_request_exception = False  # a server error comes back as a 500 response
    return client


# --- malformed JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ['{"username": "ann"', "{'username': 'ann'}", '{"a": 1,}', "\ufeff{", "nul\x00l"])
def test_malformed_json_to_the_token_endpoint_is_a_400_json_error(raw):
    r = _no_raise(APIClient()).post("/v1/auth/token/", raw, content_type="application/json")
    assert r.status_code == 400, (raw, r.status_code, r.content[:200])
    assert r["Content-Type"].startswith("application/json")
    assert "JSON" in r.json()["detail"]


def test_malformed_json_in_put_and_patch_is_a_400_json_error(api_as):
    admin = _no_raise(api_as("admin"))
    r = admin.post(TARGETS, {"name": "orders", "host": "db.invalid", "dbname": "orders", "user": "u"}, format="json")
    assert r.status_code == 201, r.content
    pk = r.json()["id"]
    for method in ("put", "patch"):
        r = getattr(admin, method)(f"{TARGETS}{pk}/", '{"description": "x"', content_type="application/json")
        assert r.status_code == 400, (method, r.status_code)
        assert r["Content-Type"].startswith("application/json") and "JSON" in r.json()["detail"]
    assert admin.get(f"{TARGETS}{pk}/").json()["description"] == ""


# --- `../` and other odd ids in paths ------------------------------------------------------------------

ODD_IDS = [
    "..%2F..%2Fetc", "..%2F..%2F..%2Fetc%2Fpasswd", "..", "...", "%2E%2E", "..%5C..%5Cwindows", "%2Fetc%2Fpasswd",
    "..%252F..%252Fetc", "a%2F..%2Fb", "~root", "%7E", "x" * 500, "%C0%AE%C0%AE", "%FF%FE", "%E2%80%AE",
]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_traversal_and_odd_ids_in_api_paths_are_404_never_500(api_as, odd):
    admin = _no_raise(api_as("admin"))
    for method, url in (
        ("get", f"{V1}/database/backups/{odd}"),
        ("delete", f"{V1}/database/backups/{odd}"),
        ("post", f"{V1}/database/backups/{odd}/restore"),
        ("post", f"{V1}/verification/verify/{odd}"),
        ("get", f"/v1/jobs/{odd}"),
        ("get", f"{TARGETS}{odd}/"),
        ("patch", f"{TARGETS}{odd}/"),
        ("delete", f"{TARGETS}{odd}/"),
        ("get", f"{LOCATIONS}{odd}/"),
        ("put", f"{LOCATIONS}{odd}/"),
    ):
        r = getattr(admin, method)(url, {"target": "x", "dbname": "x"}, format="json")
        assert r.status_code == 404, (method, url, r.status_code, r.content[:300])
        assert b"Traceback" not in r.content


@pytest.mark.parametrize("odd", ODD_IDS)
def test_traversal_and_odd_ids_in_console_paths_are_404_never_500(admin_client, odd):
    admin_client.raise_request_exception = False
    for method, url in (("get", f"/backups/{odd}/"), ("post", f"/backups/{odd}/verify/"), ("get", f"/jobs/{odd}/"),
                        ("post", f"/backups/{odd}/")):
        r = getattr(admin_client, method)(url)
        assert r.status_code == 404, (method, url, r.status_code)


def test_nul_byte_in_an_id_is_404_not_500(api_as, admin_client):
    """On this suite's metadata database (SQLite). On PostgreSQL a NUL in a text parameter raises ValueError in
    psycopg, so this is worth re-running against a PostgreSQL DATABASE_URL."""
    admin = _no_raise(api_as("admin"))
    admin_client.raise_request_exception = False
    codes = {
        "api backup": admin.get(f"{V1}/database/backups/01HZ%00..%2Fetc").status_code,
        "api job": admin.get("/v1/jobs/01HZ%00").status_code,
        "api restore": admin.post(f"{V1}/database/backups/a%00b/restore", {}, format="json").status_code,
        "api verify": admin.post(f"{V1}/verification/verify/a%00b", {}, format="json").status_code,
        "api target": admin.get(f"{TARGETS}1%00/").status_code,
        "console backup": admin_client.get("/backups/a%00b/").status_code,
        "console job": admin_client.get("/jobs/a%00b/").status_code,
    }
    assert codes == dict.fromkeys(codes, 404), codes


def test_traversal_in_body_names_is_400(api_as, target):
    operator = _no_raise(api_as("operator"))
    r = operator.post(f"{V1}/database/backup/full", {"target": "../sample"}, format="json")
    assert r.status_code == 400 and "target" in r.json()
    r = operator.post(f"{V1}/verification/verify-all", {"target": "..%2Fsample"}, format="json")
    assert r.status_code == 400 and "target" in r.json()
    admin = _no_raise(api_as("admin"))
    for name in ("../x", "..", "a/b", "-h", "--dbname=x"):
        r = admin.post(TARGETS, {"name": "n1", "host": "db.invalid", "dbname": "d", "user": "u",
                                 "storage_location": name}, format="json")
        assert r.status_code == 400 and "storage_location" in r.json(), (name, r.content)
    for name in ("../x", "a/b", "a b", ".."):
        r = admin.post(TARGETS, {"name": name, "host": "db.invalid", "dbname": "d", "user": "u"}, format="json")
        assert r.status_code == 400 and "name" in r.json(), name
        r = admin.post(LOCATIONS, {"name": name, "kind": "local", "path": "/tmp/x"}, format="json")
        assert r.status_code == 400 and "name" in r.json(), name
    assert not Backup.objects.exists()


# --- names starting with "-" -------------------------------------------------------------------------


def test_a_restore_dbname_starting_with_a_dash_is_refused(api_as, target):
    operator = api_as("operator")
    backup_id = operator.post(f"{V1}/database/backup/full", {"target": "sample"}, format="json").json()["backup_id"]
    admin = _no_raise(api_as("admin"))
    for name in ("-x", "--help", "--dbname=postgres", "-h"):
        r = admin.post(f"{V1}/database/backups/{backup_id}/restore", {"target": "sample", "dbname": name,
                                                                       "create": True}, format="json")
        assert r.status_code == 400 and "dbname" in r.json(), (name, r.content)
    assert not Job.objects.filter(type="restore.database").exists()


@pytest.fixture
def dashed_database(pg_cluster):
    """A database named "--help" owned by a login role named "--version", holding one small table.

    Were either name handed to pg_dump or pg_restore as an argument, the tool would print its help or
    version and exit 0: the backup would hold no table and the restore would restore nothing.
    """
    admin = pg_cluster.conn()
    with psycopg.connect(**admin.kwargs(), autocommit=True) as c:
        c.execute('DROP DATABASE IF EXISTS "--help" WITH (FORCE)')
        c.execute('DROP ROLE IF EXISTS "--version"')
        c.execute('CREATE ROLE "--version" LOGIN SUPERUSER')
    create_database(pg_cluster, "--help")
    conn = pg_cluster.conn("--help")
    with psycopg.connect(**conn.kwargs(), autocommit=True) as c:
        c.execute('SET ROLE "--version"')
        c.execute("CREATE TABLE marker (id int PRIMARY KEY, note text)")
        c.execute("INSERT INTO marker SELECT g, 'row ' || g FROM generate_series(1, 7) g")
    yield conn
    drop_database(pg_cluster, "--help")
    with psycopg.connect(**admin.kwargs(), autocommit=True) as c:
        role = sql.Identifier("--version")
        c.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role))  # e.g. a database it created
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


def test_names_starting_with_a_dash_are_accepted_as_names_and_never_become_options(
    api_as, dashed_database, fresh_db, tmp_path
):
    """What is true today: target and location names are slugs, so "--help" is a valid name (the API accepts
    it, 201), and so is a dbname or user "--help"/"--version" (plain text fields). None of them reaches a
    command line: connection settings travel in PG* variables, so the backup holds the real table."""
    admin = _no_raise(api_as("admin"))
    r = admin.post(LOCATIONS, {"name": "--help", "kind": "local", "path": str(tmp_path / "dash-loc")},
                   format="json")
    assert r.status_code == 201, r.content
    r = admin.post(LOCATIONS, {"name": "-p", "kind": "local", "path": "-p"}, format="json")
    assert r.status_code == 400 and "absolute" in r.json()["detail"]  # a path starting with "-" is not absolute
    r = admin.post(TARGETS, {"name": "--help", "host": dashed_database.host, "port": dashed_database.port,
                             "dbname": "--help", "user": "--version", "password": "any", "sslmode": "disable",
                             "storage_location": "--help"}, format="json")
    assert r.status_code == 201, r.content

    operator = api_as("operator")
    r = operator.post(f"{V1}/database/backup/full", {"target": "--help"}, format="json")
    assert r.status_code == 202, r.content
    backup = Backup.objects.get(pk=r.json()["backup_id"])
    assert backup.status == BackupStatus.SUCCEEDED, backup.error
    assert backup.row_counts == {"public.marker": 7}
    assert backup.storage_location.name == "--help"
    assert any((tmp_path / "dash-loc").rglob("*")), "the artifact went to the location's own path"

    r = operator.post(f"{V1}/verification/verify/{backup.pk}", {"level": "decrypt"}, format="json")
    assert r.status_code == 202 and Job.objects.get(pk=r.json()["job_id"]).status == "succeeded"

    dest = fresh_db(create=False, prefix="dashrestore")
    r = admin.post(f"{V1}/database/backups/{backup.pk}/restore",
                   {"target": "--help", "dbname": dest.dbname, "create": True}, format="json")
    assert r.status_code == 202, r.content
    job = Job.objects.get(pk=r.json()["job_id"])
    assert job.status == "succeeded", job.error
    assert table_contents(dest, "public.marker") == table_contents(dashed_database, "public.marker")
    with catalog.connect(dest) as c:
        assert catalog.row_counts(c.cursor()) == {"public.marker": 7}


@pytest.mark.parametrize("path", ["/v1/jobs/..%2Fetc", "/v1/jobs/%00", "/v1/no-such-route",
                                  "/v1/backup-recovery/database/backups/" + "u" * 26])
def test_api_paths_that_match_no_route_answer_json(api_as, path):
    """An id of the wrong shape never reaches a query (no driver error on NUL bytes): a JSON 404."""
    r = api_as("viewer").get(path)
    assert r.status_code == 404 and r["Content-Type"].startswith("application/json")
    assert r.json() == {"detail": "Not found."}


def test_ids_are_case_insensitive_ulids(api_as, target):
    from apps.backups.jobs import DatabaseBackupJob
    from apps.core.services import SYSTEM

    job = DatabaseBackupJob.run_now(target=target, actor=SYSTEM)
    r = api_as("viewer").get(f"/v1/jobs/{job.pk.lower()}")
    assert r.status_code == 200 and r.json()["id"] == job.pk

"""Security review, things that hold up today (keep it so): a target's password, given once through the API,
shows up nowhere after a backup, a verification and a restore: not in responses, jobs, audit events, logs,
stored files or the metadata database."""
import base64
import json
import logging
from urllib.parse import quote

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from apps.backups.models import Backup, BackupStatus
from apps.core.models import AuditEvent
from apps.databases.models import DatabaseTarget
from apps.jobs.models import Job
from tests.helpers import V1, table_contents

pytestmark = pytest.mark.django_db

# Distinctive, and with characters that a DSN or a URL would escape: both spellings are looked for.
SECRET = "Zq9!held-UP@pw:7f3c/Secr3t"
SPELLINGS = [SECRET, quote(SECRET, safe=""), quote(SECRET), SECRET.replace("@", "%40").replace(":", "%3A"),
             base64.b64encode(SECRET.encode()).decode(), json.dumps(SECRET)[1:-1]]


def leaks(blob) -> list[str]:
    """The spellings of the secret found in `blob` (text or bytes)."""
    if isinstance(blob, memoryview):
        blob = blob.tobytes()
    if isinstance(blob, bytes):
        return [s for s in SPELLINGS if s.encode() in blob]
    return [s for s in SPELLINGS if s in str(blob)]


def _scan_database() -> dict:
    """Every text column of every table, raw; and every field as the models decode it."""
    found = {}
    with connection.cursor() as cur:
        for table in connection.introspection.table_names(cur):
            cur.execute(f'SELECT * FROM "{table}"')
            for row in cur.fetchall():
                for value in row:
                    if value is not None and leaks(value if isinstance(value, (bytes, memoryview)) else str(value)):
                        found[f"table {table}"] = leaks(str(value))
    for model in apps.get_models():
        for obj in model._default_manager.all():
            for f in model._meta.concrete_fields:
                if leaks(repr(f.value_from_object(obj))):
                    found[f"model {model._meta.label}.{f.name}"] = leaks(repr(f.value_from_object(obj)))
    return found


@pytest.fixture
def every_log_record(caplog):
    """Every logger at DEBUG and propagating into caplog, including the SQL of every query (the debug cursor)."""
    caplog.set_level(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    propagate = {lg: lg.propagate for lg in loggers}
    for lg in loggers:
        caplog.set_level(logging.DEBUG, logger=lg.name)
        lg.propagate = True
    forced = connection.force_debug_cursor
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = forced
    for lg, value in propagate.items():
        lg.propagate = value


def test_the_target_password_appears_nowhere(api_as, source_db, fresh_db, backup_root, every_log_record):
    caplog = every_log_record
    admin, operator = api_as("admin"), api_as("operator")
    bodies: list[bytes] = []

    def keep(r, status):
        assert r.status_code == status, (r.status_code, r.content[:300])
        bodies.append(r.content)
        return r.json()

    created = keep(admin.post(f"{V1}/database/targets/", {
        "name": "secretive", "host": source_db.host, "port": source_db.port, "dbname": source_db.dbname,
        "user": source_db.user, "password": SECRET, "sslmode": "disable",
    }, format="json"), 201)
    assert created["has_password"] is True
    target = DatabaseTarget.objects.get(name="secretive")
    assert target.get_password() == SECRET  # it is really stored, sealed, and used for the work below

    accepted = keep(operator.post(f"{V1}/database/backup/full", {"target": "secretive"}, format="json"), 202)
    backup_id = accepted["backup_id"]
    keep(operator.get(accepted["links"]["job"]), 200)
    backup = keep(operator.get(f"{V1}/database/backups/{backup_id}"), 200)
    assert backup["status"] == "succeeded", backup["error"]

    verify = keep(operator.post(f"{V1}/verification/verify/{backup_id}", {"level": "decrypt"}, format="json"), 202)
    assert keep(operator.get(verify["links"]["job"]), 200)["status"] == "succeeded"

    dest = fresh_db(create=False, prefix="secretrestore")
    restore = keep(admin.post(f"{V1}/database/backups/{backup_id}/restore",
                              {"target": "secretive", "dbname": dest.dbname, "create": True}, format="json"), 202)
    job = keep(admin.get(restore["links"]["job"]), 200)
    assert job["status"] == "succeeded", job["error"]
    assert table_contents(dest, "public.tenants") == table_contents(source_db, "public.tenants")

    # Every read the API offers, as the admin.
    for url in (f"{V1}/database/targets/", f"{V1}/database/targets/{created['id']}/", f"{V1}/database/backups",
                f"{V1}/database/statistics", f"{V1}/verification/runs", "/v1/jobs", f"{V1}/storage/locations/"):
        keep(admin.get(url), 200)
    # And the console pages, as a superuser.
    browser = Client()
    browser.force_login(User.objects.create_superuser("root", "root@example.invalid", "pw"))
    for url in ("/", f"/backups/{backup_id}/", *[f"/jobs/{j.pk}/" for j in Job.objects.all()],
                f"/admin/databases/databasetarget/{target.pk}/change/", "/admin/jobs/job/", "/admin/core/auditevent/"):
        r = browser.get(url)
        assert r.status_code == 200, url
        bodies.append(r.content)

    found = {}
    for i, body in enumerate(bodies):
        if leaks(body):
            found[f"response {i}"] = leaks(body)

    # Jobs and audit events, field by field.
    jobs = list(Job.objects.all())
    assert {j.type for j in jobs} >= {"backup.database", "verify.backups", "restore.database"}
    for j in jobs:
        for name in ("args", "log", "result", "error"):
            if leaks(json.dumps(getattr(j, name))):
                found[f"job {j.type} {name}"] = leaks(json.dumps(getattr(j, name)))
    events = list(AuditEvent.objects.all())
    assert {"target.created", "backup.requested", "backup.restore.requested"} <= {e.action for e in events}
    for e in events:
        if leaks(json.dumps(e.details)):
            found[f"audit {e.action}"] = leaks(json.dumps(e.details))

    # Logs at DEBUG, SQL included (the INSERT of the target carries only the sealed value).
    assert any("databases_databasetarget" in r.getMessage() for r in caplog.records), "SQL was not captured"
    for r in caplog.records:
        if leaks(r.getMessage()) or leaks(r.args):
            found[f"log {r.name}"] = leaks(r.getMessage())

    # Every file under the backup root, byte for byte.
    files = [p for p in backup_root.rglob("*") if p.is_file()]
    assert len(files) >= 2  # artifact and manifest
    for p in files:
        if leaks(p.read_bytes()):
            found[f"file {p.relative_to(backup_root)}"] = leaks(p.read_bytes())

    # Every row of every table of the metadata database: raw values, and as the models decode them.
    found.update(_scan_database())
    target.refresh_from_db()
    assert target.password_sealed and not leaks(target.password_sealed)

    assert found == {}
    assert Backup.objects.get(pk=backup_id).status == BackupStatus.SUCCEEDED


def test_the_password_stays_out_of_failures_too(api_as, source_db, every_log_record):
    """The error paths: a backup, a verification and a restore that fail on the connection or the data."""
    from apps.databases.clusters import free_port

    caplog = every_log_record
    admin, operator = api_as("admin"), api_as("operator")
    bodies = []
    r = admin.post(f"{V1}/database/targets/", {
        "name": "unreachable", "host": "127.0.0.1", "port": free_port(), "dbname": "nowhere", "user": "nobody",
        "password": SECRET, "sslmode": "disable"}, format="json")
    assert r.status_code == 201, r.content
    bodies.append(r.content)
    r = operator.post(f"{V1}/database/backup/full", {"target": "unreachable"}, format="json")
    assert r.status_code == 202, r.content
    bodies += [r.content, operator.get(r.json()["links"]["job"]).content,
               operator.get(r.json()["links"]["backup"]).content]
    failed = Job.objects.get(pk=r.json()["job_id"])
    assert failed.status == "failed" and failed.error

    # A backup that worked, restored into a database that does not exist on the unreachable server.
    r = admin.post(f"{V1}/database/targets/", {
        "name": "reachable", "host": source_db.host, "port": source_db.port, "dbname": source_db.dbname,
        "user": source_db.user, "password": SECRET, "sslmode": "disable"}, format="json")
    assert r.status_code == 201
    r = operator.post(f"{V1}/database/backup/full", {"target": "reachable"}, format="json")
    backup_id = r.json()["backup_id"]
    assert Backup.objects.get(pk=backup_id).status == BackupStatus.SUCCEEDED
    for body in ({"target": "unreachable", "dbname": "x"}, {"target": "reachable", "dbname": "no_such_db"}):
        r = admin.post(f"{V1}/database/backups/{backup_id}/restore", body, format="json")
        assert r.status_code == 202, r.content
        job = admin.get(r.json()["links"]["job"])
        assert job.json()["status"] == "failed" and job.json()["error"]
        bodies.append(job.content)

    found = [i for i, b in enumerate(bodies) if leaks(b)]
    found += [f"job {j.type}" for j in Job.objects.all()
              if leaks(json.dumps([j.args, j.log, j.result, j.error]))]
    found += [f"backup {b.pk}" for b in Backup.objects.all() if leaks(b.error)]
    found += [f"audit {e.action}" for e in AuditEvent.objects.all() if leaks(json.dumps(e.details))]
    found += [f"log {r.name}" for r in caplog.records if leaks(r.getMessage())
              or (r.exc_info and leaks(logging.Formatter().formatException(r.exc_info)))]
    assert found == []


def test_secrets_stay_out_of_approvals_channels_and_logs(settings, api_as, source_db, fresh_db, every_log_record):
    """The two-person flow (a restore over an existing database, requested by one admin, approved by another)
    and an alert channel whose webhook URL and HMAC key are secrets, tested against a real receiver: the
    password and the channel secrets are nowhere in answers, approval requests, jobs, audit, logs or any row."""
    from tests.receivers import HttpReceiver

    settings.APPROVAL_REQUIRED_ACTIONS = ["all"]
    caplog = every_log_record
    alice, bob, operator = api_as("admin", "alice"), api_as("admin", "bob"), api_as("operator")
    bodies = []

    def keep(r, status):
        assert r.status_code == status, (r.status_code, r.content[:300])
        bodies.append(r.content)
        return r.json()

    keep(alice.post(f"{V1}/database/targets/", {
        "name": "secretive", "host": source_db.host, "port": source_db.port, "dbname": source_db.dbname,
        "user": source_db.user, "password": SECRET, "sslmode": "disable"}, format="json"), 201)
    backup_id = keep(operator.post(f"{V1}/database/backup/full", {"target": "secretive"}, format="json"),
                     202)["backup_id"]
    dest = fresh_db(prefix="secretapproval")
    pending = keep(alice.post(f"{V1}/database/backups/{backup_id}/restore",
                              {"target": "secretive", "dbname": dest.dbname}, format="json"), 202)
    keep(alice.get(f"/v1/approvals/{pending['approval_request']}"), 200)
    decided = keep(bob.post(f"/v1/approvals/{pending['approval_request']}/approve", {}, format="json"), 200)
    assert decided["status"] == "executed", decided
    assert keep(bob.get(f"/v1/jobs/{decided['result']['job_id']}"), 200)["status"] == "succeeded"
    assert table_contents(dest, "public.tenants") == table_contents(source_db, "public.tenants")
    keep(bob.get("/v1/approvals/"), 200)
    keep(bob.get("/v1/audit/"), 200)

    receiver = HttpReceiver().start()
    try:
        hook = f"http://127.0.0.1:{receiver.port}/hook/{quote(SECRET, safe='')}"
        channel = keep(alice.post(f"{V1}/monitoring/channels/", {
            "name": "hooked", "kind": "webhook", "secrets": {"url": hook, "hmac_key": SECRET}}, format="json"), 201)
        keep(operator.get(f"{V1}/monitoring/channels/{channel['id']}/"), 200)
        keep(alice.post(f"{V1}/monitoring/channels/{channel['id']}/test/", {}, format="json"), 200)
        assert len(receiver.requests) == 1  # the secret was really used
    finally:
        receiver.stop()
    browser = Client()
    browser.force_login(User.objects.create_superuser("root", "root@example.invalid", "pw"))
    for url in ("/approvals/", f"/jobs/{decided['result']['job_id']}/", "/admin/approvals/approvalrequest/",
                "/admin/core/auditevent/", "/admin/monitoring/notificationchannel/"):
        r = browser.get(url)
        assert r.status_code == 200, url
        bodies.append(r.content)

    found = {f"response {i}": leaks(b) for i, b in enumerate(bodies) if leaks(b)}
    found.update(_scan_database())
    assert any("approvals_approvalrequest" in r.getMessage() for r in caplog.records), "SQL was not captured"
    for r in caplog.records:
        if leaks(r.getMessage()) or leaks(r.args):
            found[f"log {r.name}"] = leaks(r.getMessage())
    assert found == {}

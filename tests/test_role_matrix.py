"""The role matrix: each role (anonymous, viewer, operator, admin) against each state-changing API operation
and each console action, decided by one table of role per action.

The API operations come from the OpenAPI schema and the console actions from the URL resolver (views carrying
`required_role`, set by apps.console.permissions.console_action), so a new endpoint or console action without
a declared role fails `test_every_*_is_declared`. Requests carry no usable body and unknown ids: an allowed
role gets a 4xx about the input (or the object), never 401/403, and nothing is changed.
"""
import functools
import json
import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver
from drf_spectacular.generators import SchemaGenerator

from apps.console import urls as console_urls
from apps.core.roles import ADMIN, OPERATOR, RANK, VIEWER
from tests.helpers import make_user

pytestmark = pytest.mark.django_db

ROLES = [None, VIEWER, OPERATOR, ADMIN]

# One table: the role each action needs, whichever interface asks.
ACTIONS = {
    "backup.run": OPERATOR, "backup.verify": OPERATOR, "backup.delete": ADMIN, "backup.restore": ADMIN,
    "documents.run": OPERATOR, "documents.verify": OPERATOR, "documents.restore": ADMIN,
    "alert.handle": OPERATOR, "dr.drill": OPERATOR, "dr.failover": ADMIN, "recovery.pitr": ADMIN,
    "retention.preview": OPERATOR, "retention.enforce": ADMIN, "storage.test": OPERATOR, "channel.test": ADMIN,
    "config.change": ADMIN, "approval.decide": ADMIN,
}

V1 = "/v1/backup-recovery"
API = {
    ("POST", "/v1/approvals/{id}/approve"): "approval.decide",
    ("POST", "/v1/approvals/{id}/reject"): "approval.decide",
    ("POST", f"{V1}/database/backup/full"): "backup.run",
    ("POST", f"{V1}/database/backup/incremental"): "backup.run",
    ("DELETE", f"{V1}/database/backups/{{id}}"): "backup.delete",
    ("POST", f"{V1}/database/backups/{{id}}/restore"): "backup.restore",
    ("POST", f"{V1}/disaster-recovery/failover"): "dr.failover",
    ("POST", f"{V1}/disaster-recovery/point-in-time-recovery"): "recovery.pitr",
    ("POST", f"{V1}/disaster-recovery/test/{{plan_id}}"): "dr.drill",
    ("POST", f"{V1}/documents/backup"): "documents.run",
    ("POST", f"{V1}/documents/backups/{{id}}/restore"): "documents.restore",
    ("POST", f"{V1}/documents/backups/{{id}}/verify"): "documents.verify",
    ("POST", f"{V1}/monitoring/alerts/{{id}}/acknowledge"): "alert.handle",
    ("POST", f"{V1}/monitoring/alerts/{{id}}/resolve"): "alert.handle",
    ("POST", f"{V1}/monitoring/channels/{{id}}/test/"): "channel.test",
    ("POST", f"{V1}/retention/enforce-policies"): "retention.preview",  # a real run: admin (its own test)
    ("POST", f"{V1}/storage/locations/{{id}}/test/"): "storage.test",
    ("POST", f"{V1}/verification/verify-all"): "backup.verify",
    ("POST", f"{V1}/verification/verify/{{id}}"): "backup.verify",
}
# Configuration: every create, replace, change and delete of these collections is an admin's.
CONFIG = ["database/targets", "disaster-recovery/plans", "documents/sources", "monitoring/channels",
          "monitoring/rules", "retention/rules", "storage/locations"]
for collection in CONFIG:
    API[("POST", f"{V1}/{collection}/")] = "config.change"
    for method in ("PUT", "PATCH", "DELETE") if collection != "storage/locations" else ("PUT", "PATCH"):
        API[(method, f"{V1}/{collection}/{{id}}/")] = "config.change"  # a location is disabled, never deleted
PUBLIC = {("POST", "/v1/auth/token/"), ("POST", "/v1/auth/token/refresh/")}  # logging in needs no role
BODIES = {("POST", f"{V1}/retention/enforce-policies"): {"dry_run": True}}

CONSOLE = {
    "backup-now": "backup.run", "backup": "backup.restore", "verify": "backup.verify", "retention": "retention.enforce",
    "alert-action": "alert.handle", "dr-drill": "dr.drill", "dr-failover": "dr.failover", "dr-platform": "recovery.pitr",
    "approval-decide": "approval.decide", "source-backup": "documents.run", "version-restore": "documents.restore",
    "version-verify": "documents.verify", "pitr": "recovery.pitr",
}
CONSOLE_READ_ONLY = {"dashboard", "dashboard-charts", "job", "job-progress", "monitoring", "alerts", "audit", "dr-status", "dr-plan",
                     "approvals", "target", "source"}

ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@functools.cache
def schema_operations() -> dict[tuple[str, str], dict]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(method.upper(), path): op for path, ops in schema["paths"].items() for method, op in ops.items()
            if method in ("post", "put", "patch", "delete")}


def fill(path: str, op: dict) -> str:
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = "999999" if param["schema"].get("type") == "integer" else ULID
            path = path.replace("{" + param["name"] + "}", value)
    return path


def console_patterns() -> list[URLPattern]:
    out = []
    for p in console_urls.urlpatterns:
        assert not isinstance(p, URLResolver), "console URLs are flat"
        out.append(p)
    return out


def allowed(role: str | None, needed: str) -> bool:
    return role is not None and RANK[role] >= RANK[needed]


def client_as(role: str | None) -> Client:
    client = Client()
    if role is not None:
        client.force_login(make_user(f"matrix-{role}", role))
    return client


def test_every_state_changing_api_operation_is_declared():
    operations = set(schema_operations())
    missing = operations - set(API) - PUBLIC
    assert not missing, f"declare the role of these operations in tests/test_role_matrix.py: {sorted(missing)}"
    assert not (set(API) - operations), "declared operations that the schema no longer has"


def test_every_console_url_is_declared():
    names = {p.name for p in console_patterns()}
    assert not names - set(CONSOLE) - CONSOLE_READ_ONLY, "declare new console URLs in tests/test_role_matrix.py"
    for p in console_patterns():
        role = getattr(p.callback, "required_role", None)
        if p.name in CONSOLE:
            assert role == ACTIONS[CONSOLE[p.name]], (p.name, role)
        else:
            assert role is None, f"{p.name} changes state ({role}): declare it in CONSOLE"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "anonymous")
def test_api_matrix(role):
    from rest_framework.test import APIClient

    client = APIClient(raise_request_exception=False)
    if role is not None:
        client.force_authenticate(make_user(f"api-{role}", role))
    operations = schema_operations()
    wrong = []
    for (method, path), action in sorted(API.items()):
        needed = ACTIONS[action]
        url = fill(path, operations[(method, path)])
        r = client.generic(method, url, data=json.dumps(BODIES.get((method, path), {})),
                           content_type="application/json")
        if role is None:
            ok = r.status_code == 401
        elif allowed(role, needed):
            ok = r.status_code not in (401, 403) and r.status_code < 500
        else:
            ok = r.status_code == 403 and needed in r.json().get("detail", "")
        if not ok:
            wrong.append((method, url, needed, r.status_code, r.content[:150]))
    assert not wrong, wrong


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "anonymous")
def test_console_matrix(role):
    client = client_as(role)
    wrong = []
    for p in console_patterns():
        if p.name not in CONSOLE:
            continue
        needed = ACTIONS[CONSOLE[p.name]]
        route = str(p.pattern)
        url = "/" + re.sub(r"<(\w+):(\w+)>", lambda m: {"int": "999999", "ulid": ULID}.get(m.group(1), "approve"),
                           route)
        r = client.post(url, {})
        if role is None:
            ok = r.status_code == 302 and "/login/" in r["Location"]
        elif allowed(role, needed):
            ok = r.status_code not in (401, 403) and r.status_code < 500 and "/login/" not in r.get("Location", "")
        else:
            ok = r.status_code == 403
        if not ok:
            wrong.append((url, needed, r.status_code))
    assert not wrong, wrong


def test_console_form_without_csrf_token_is_refused():
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("csrf-admin", ADMIN))
    for p in console_patterns():
        if p.name in CONSOLE:
            url = "/" + re.sub(r"<(\w+):(\w+)>",
                               lambda m: {"int": "999999", "ulid": ULID}.get(m.group(1), "approve"), str(p.pattern))
            assert client.post(url, {}).status_code == 403, url


def test_operations_the_policy_may_hold_document_the_pending_answer():
    from apps.approvals.schema import GATED

    schema = SchemaGenerator().get_schema(request=None, public=True)
    for method, path in GATED:
        answer = schema["paths"][path][method]["responses"]["202"]["content"]["application/json"]["schema"]
        assert "ApprovalPending" in json.dumps(answer), (method, path)

"""API authentication and roles: JWT obtain/refresh, 401 without credentials, 403 for a too-small role; schema."""
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.helpers import PASSWORD, V1, make_user

pytestmark = pytest.mark.django_db


def test_token_obtain_and_refresh():
    make_user("ann", "viewer")
    client = APIClient()
    r = client.post("/v1/auth/token/", {"username": "ann", "password": PASSWORD}, format="json")
    assert r.status_code == 200
    tokens = r.json()
    assert set(tokens) >= {"access", "refresh"}

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.get(f"{V1}/database/backups").status_code == 200

    r = APIClient().post("/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert r.status_code == 200
    fresh = APIClient()
    fresh.credentials(HTTP_AUTHORIZATION=f"Bearer {r.json()['access']}")
    assert fresh.get("/v1/jobs").status_code == 200


def test_bad_credentials_and_bad_tokens_get_401():
    make_user("ann", "viewer")
    client = APIClient()
    r = client.post("/v1/auth/token/", {"username": "ann", "password": "wrong"}, format="json")
    assert r.status_code == 401
    assert "access" not in r.json()
    assert client.post("/v1/auth/token/", {"username": "ann"}, format="json").status_code == 400
    assert client.post("/v1/auth/token/refresh/", {"refresh": "not-a-token"}, format="json").status_code == 401

    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    r = client.get(f"{V1}/database/backups")
    assert r.status_code == 401
    assert r["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("method,url", [
    ("get", f"{V1}/database/backups"),
    ("get", f"{V1}/database/backups/01HZZZZZZZZZZZZZZZZZZZZZZZ"),
    ("get", f"{V1}/database/statistics"),
    ("post", f"{V1}/database/backup/full"),
    ("post", f"{V1}/database/backups/01HZZZZZZZZZZZZZZZZZZZZZZZ/restore"),
    ("post", f"{V1}/verification/verify/01HZZZZZZZZZZZZZZZZZZZZZZZ"),
    ("post", f"{V1}/verification/verify-all"),
    ("get", f"{V1}/database/targets/"),
    ("post", f"{V1}/database/targets/"),
    ("get", f"{V1}/storage/locations/"),
    ("get", "/v1/jobs"),
    ("get", "/v1/jobs/01HZZZZZZZZZZZZZZZZZZZZZZZ"),
])
def test_unauthenticated_requests_get_401(method, url):
    r = getattr(APIClient(), method)(url, {}, format="json")
    assert r.status_code == 401, (url, r.status_code)
    assert r.json()["detail"]
    assert r["WWW-Authenticate"].startswith("Bearer")


def test_viewer_reads_but_cannot_write(api_as):
    viewer = api_as("viewer")
    assert viewer.get(f"{V1}/database/backups").status_code == 200
    assert viewer.get(f"{V1}/database/targets/").status_code == 200
    r = viewer.post(f"{V1}/database/backup/full", {"target": "sample"}, format="json")
    assert r.status_code == 403
    assert "role" in r.json()["detail"]
    assert viewer.post(f"{V1}/verification/verify-all", {}, format="json").status_code == 403
    assert viewer.post(f"{V1}/database/targets/", {"name": "x"}, format="json").status_code == 403


def test_operator_cannot_restore_or_configure(api_as):
    operator = api_as("operator")
    r = operator.post(f"{V1}/database/backups/01HZZZZZZZZZZZZZZZZZZZZZZZ/restore", {}, format="json")
    assert r.status_code == 403
    assert operator.post(f"{V1}/database/targets/", {"name": "x"}, format="json").status_code == 403
    assert operator.post(f"{V1}/storage/locations/", {"name": "x"}, format="json").status_code == 403


def test_user_without_role_is_refused(api_as):
    assert api_as(None).get(f"{V1}/database/backups").status_code == 403


def test_session_authentication_reads():
    client = APIClient()
    client.force_login(make_user("sam", "viewer"))
    r = client.get(f"{V1}/database/backups")
    assert r.status_code == 200
    assert r.json()["results"] == []


def test_openapi_schema_generates_without_warnings(tmp_path, settings):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(out))
    text = out.read_text()
    for path in ("/v1/backup-recovery/database/backup/full", "/v1/backup-recovery/database/backups/{id}",
                 "/v1/backup-recovery/database/statistics", "/v1/backup-recovery/database/targets/",
                 "/v1/backup-recovery/storage/locations/", "/v1/jobs/{id}", "/v1/auth/token/"):
        assert f"  {path}:" in text, path
    assert "password_sealed" not in text

    client = APIClient()
    assert client.get("/api/schema/").status_code == 401  # served to logged-in users only
    client.force_login(make_user("sam", "viewer"))
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200

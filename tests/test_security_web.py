"""Security and crash-safety of the web layer: bad requests are 4xx, logins are throttled, tokens are revoked
by a password change, the schema needs a login. Every test replays the request of the issue."""
import json

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.helpers import PASSWORD, V1, make_user

pytestmark = pytest.mark.django_db

TOKEN = "/v1/auth/token/"
REFRESH = "/v1/auth/token/refresh/"


def client() -> APIClient:
    # raise_request_exception=False: a server error comes back as a 500 response instead of an exception.
    return APIClient(raise_request_exception=False)


def assert_json_error(r, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.content[:300])
    assert r["Content-Type"].startswith("application/json")
    assert r.json()["detail"]
    assert b"Traceback" not in r.content


# --- item 8: bad requests that answered 500 ------------------------------------------------------------


def test_unauthenticated_3mb_body_to_token_is_413():
    body = json.dumps({"username": "a" * 3_000_000, "password": "x"}).encode()
    assert_json_error(client().post(TOKEN, data=body, content_type="application/json"), 413)


def test_3mb_body_to_an_authenticated_endpoint_is_413(api_as):
    admin = api_as("admin")
    admin.raise_request_exception = False
    body = json.dumps({"name": "x", "description": "d" * 3_000_000}).encode()
    assert_json_error(admin.post(f"{V1}/database/targets/", data=body, content_type="application/json"), 413)


def test_get_with_2000_query_parameters_is_400(api_as):
    viewer = api_as("viewer")
    viewer.raise_request_exception = False
    query = "&".join(f"f{i}=1" for i in range(2000))
    assert_json_error(viewer.get(f"{V1}/database/backups?{query}"), 400)


def test_json_nested_100000_levels_is_400(api_as):
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_json_error(client().post(TOKEN, data=deep, content_type="application/json"), 400)
    admin = api_as("admin")
    admin.raise_request_exception = False
    deep_object = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert_json_error(admin.post(f"{V1}/database/targets/", data=deep_object, content_type="application/json"), 400)


# --- item 13: throttled logins, revoked tokens, private schema ------------------------------------------


def test_token_endpoint_is_throttled_per_address(settings):
    settings.LOGIN_THROTTLE_RATE = "10/min"
    settings.AXES_FAILURE_LIMIT = 1000  # the throttle alone (the lockout: tests/test_security_hardening.py)
    make_user("ann", "viewer")
    c = client()
    codes = [c.post(TOKEN, {"username": "ann", "password": f"wrong-{i}"}, format="json").status_code
             for i in range(100)]
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
    r = c.post(TOKEN, {"username": "ann", "password": PASSWORD}, format="json")
    assert_json_error(r, 429)
    assert "access" not in r.json() and int(r["Retry-After"]) > 0


def test_a_forged_x_forwarded_for_does_not_escape_the_throttle(settings):
    settings.LOGIN_THROTTLE_RATE = "10/min"
    codes = [client().post(TOKEN, {"username": f"user{i}", "password": "x"}, format="json",
                           HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(11)]
    assert codes == [401] * 10 + [429]


def test_token_endpoint_is_throttled_per_username_across_addresses(settings):
    settings.LOGIN_THROTTLE_RATE = "10/min"
    make_user("ann", "viewer")
    for i in range(10):
        r = client().post(TOKEN, {"username": "ann", "password": "wrong"}, format="json", REMOTE_ADDR=f"10.0.0.{i}")
        assert r.status_code == 401
    r = client().post(TOKEN, {"username": "ANN", "password": PASSWORD}, format="json", REMOTE_ADDR="10.0.1.1")
    assert_json_error(r, 429)
    # Another account from a fresh address is not affected.
    make_user("bob", "viewer")
    r = client().post(TOKEN, {"username": "bob", "password": PASSWORD}, format="json", REMOTE_ADDR="10.0.1.2")
    assert r.status_code == 200


def test_password_change_revokes_access_and_refresh_tokens():
    user = make_user("ann", "viewer")
    tokens = client().post(TOKEN, {"username": "ann", "password": PASSWORD}, format="json").json()
    c = client()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert c.get(f"{V1}/database/backups").status_code == 200
    assert client().post(REFRESH, {"refresh": tokens["refresh"]}, format="json").status_code == 200

    user.set_password("a-brand-new-Passw0rd")
    user.save()

    assert_json_error(c.get(f"{V1}/database/backups"), 401)
    r = client().post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert_json_error(r, 401)
    assert "access" not in r.json()
    # The new password gives working tokens.
    fresh = client().post(TOKEN, {"username": "ann", "password": "a-brand-new-Passw0rd"}, format="json").json()
    assert client().post(REFRESH, {"refresh": fresh["refresh"]}, format="json").status_code == 200


def test_refresh_token_of_a_deleted_or_inactive_user_is_401_not_500():
    make_user("ann", "viewer")
    make_user("bob", "viewer")
    ann = client().post(TOKEN, {"username": "ann", "password": PASSWORD}, format="json").json()
    bob = client().post(TOKEN, {"username": "bob", "password": PASSWORD}, format="json").json()
    User.objects.filter(username="ann").delete()
    User.objects.filter(username="bob").update(is_active=False)
    assert_json_error(client().post(REFRESH, {"refresh": ann["refresh"]}, format="json"), 401)
    assert_json_error(client().post(REFRESH, {"refresh": bob["refresh"]}, format="json"), 401)


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_need_a_login(url, api_as):
    r = client().get(url)
    assert r.status_code == 401  # rendered as the endpoint's own format (YAML, HTML), never the schema
    assert b"/v1/backup-recovery" not in r.content and b"swagger-ui" not in r.content.lower()
    nobody = api_as(None)
    assert nobody.get(url).status_code == 403
    assert api_as("viewer").get(url).status_code == 200


def test_console_and_admin_answer_too_many_fields_and_big_bodies_with_400():
    from django.test import Client

    User.objects.create_superuser("root", "root@example.invalid", PASSWORD)
    browser = Client(raise_request_exception=False)
    browser.login(username="root", password=PASSWORD)
    query = "&".join(f"f{i}=1" for i in range(2000))
    for url in ("/admin/backups/backup/", "/admin/core/auditevent/"):
        assert browser.get(f"{url}?{query}").status_code == 400, url
    anonymous = Client(raise_request_exception=False)
    r = anonymous.post("/admin/login/", data=b"username=" + b"a" * 3_000_000,
                       content_type="application/x-www-form-urlencoded")
    assert r.status_code in (400, 403, 413), r.status_code

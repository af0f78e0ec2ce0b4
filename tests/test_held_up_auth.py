"""Security review, things that hold up today (keep it so): forged and misused JWTs are 401, every API write
checks a role (table-driven over the URLconf, so a new endpoint without a check is caught), console writes
check roles, and session-authenticated writes need a CSRF token."""
import json
import re
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient

from apps.backups import services as backup_services
from apps.backups.models import Backup, BackupStatus
from apps.core.roles import ADMIN, OPERATOR, RANK, VIEWER
from apps.core.services import SYSTEM
from apps.databases.models import DatabaseTarget
from apps.databases.services import save_target
from apps.jobs.models import Job
from tests.helpers import PASSWORD, V1, make_user

pytestmark = pytest.mark.django_db

TOKEN = "/v1/auth/token/"
READ = "/v1/jobs"


# --- 1. JWT: forged, expired and misused tokens --------------------------------------------------------


def _tokens(username: str = "ann") -> dict:
    make_user(username, "viewer")
    r = APIClient().post(TOKEN, {"username": username, "password": PASSWORD}, format="json")
    assert r.status_code == 200, r.content
    return r.json()


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _signing_key() -> str:
    return settings.SIMPLE_JWT.get("SIGNING_KEY") or settings.SECRET_KEY


def _get(token: str):
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return c.get(READ)


def _assert_refused(r) -> None:
    assert r.status_code == 401, (r.status_code, r.content[:300])
    assert r["Content-Type"].startswith("application/json")
    assert "results" not in r.json()


def test_a_re_signed_copy_of_a_real_token_is_accepted():
    """Control for the forgeries below: re-encoding the claims with the real key and HS256 gives a working token,
    so what makes them fail is only the alteration each one makes."""
    claims = _claims(_tokens()["access"])
    assert claims["token_type"] == "access"
    assert _get(jwt.encode(claims, _signing_key(), algorithm="HS256")).status_code == 200


def test_unsigned_alg_none_token_is_401():
    claims = _claims(_tokens()["access"])
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert jwt.get_unverified_header(unsigned)["alg"] == "none"
    _assert_refused(_get(unsigned))
    # Hand-made variants: the real header and payload with the signature stripped, and "alg": "None".
    header, payload, _sig = _tokens("bob")["access"].split(".")
    _assert_refused(_get(f"{header}.{payload}."))
    capital = jwt.utils.base64url_encode(b'{"alg":"None","typ":"JWT"}').decode()
    _assert_refused(_get(f"{capital}.{payload}."))


def test_token_with_a_wrong_signature_is_401():
    access = _tokens()["access"]
    claims = _claims(access)
    _assert_refused(_get(jwt.encode(claims, "not-the-signing-key-but-32-bytes-long", algorithm="HS256")))
    # The real token with its signature's last characters changed.
    header, payload, sig = access.split(".")
    _assert_refused(_get(f"{header}.{payload}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"))
    # The real signature on an altered payload (another user id).
    other = jwt.utils.base64url_encode(json.dumps(claims | {"user_id": "999"}).encode()).decode()
    _assert_refused(_get(f"{header}.{other}.{sig}"))


def test_expired_access_token_is_401():
    claims = _claims(_tokens()["access"])
    past = datetime.now(UTC) - timedelta(minutes=1)
    expired = jwt.encode(claims | {"iat": int((past - timedelta(minutes=15)).timestamp()),
                                   "exp": int(past.timestamp())}, _signing_key(), algorithm="HS256")
    r = _get(expired)
    _assert_refused(r)
    assert "expired" in r.content.decode().lower()


def test_refresh_token_used_as_bearer_access_token_is_401():
    tokens = _tokens()
    assert _claims(tokens["refresh"])["token_type"] == "refresh"
    _assert_refused(_get(tokens["refresh"]))
    # Even re-signed with the real key it is refused: the token type is checked, not only the signature.
    resigned = jwt.encode(_claims(tokens["refresh"]), _signing_key(), algorithm="HS256")
    _assert_refused(_get(resigned))
    assert _get(tokens["access"]).status_code == 200


# --- 2. Role checks on every API write, table-driven over the URLconf ----------------------------------

WRITE_METHODS = ("post", "put", "patch", "delete")
PUBLIC_ROUTES = {"auth/token/", "auth/token/refresh/"}  # the only AllowAny routes: logging in
SAMPLE_ARG = "01HZZZZZZZZZZZZZZZZZZZZZZZ"


def _walk(patterns, prefix: str = ""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def _path(route: str) -> str:
    """A concrete URL for a route of backupsite.api (mounted under /v1/)."""
    route = route.lstrip("^").rstrip("$")
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "999999", route)  # router regexes: the lookup (pk)
    route = re.sub(r"<int:[^>]+>", "999999", route)  # integer ids
    route = re.sub(r"<[^>]+>", SAMPLE_ARG, route)  # other path converters
    route = route.replace("\\.", ".").replace("/?", "/")
    return "/v1/" + route


def _api_routes() -> list[tuple[str, str, object]]:
    """(route, url, view class) for every route of the v1 API, format-suffix variants excluded."""
    from backupsite import api

    out = []
    for route, callback in _walk(api.urlpatterns):
        if "format" in route:
            continue
        # as_view(**initkwargs) overrides class attributes (permission_classes, write_role...): apply them.
        cls = type(callback.cls.__name__, (callback.cls,), dict(getattr(callback, "initkwargs", None) or {}))
        out.append((route, _path(route), cls, getattr(callback, "actions", None)))
    return out


def _write_methods(cls, actions) -> list[str]:
    if actions is not None:  # a viewset route: the methods bound to actions
        return [m for m in actions if m in WRITE_METHODS and m in cls.http_method_names]
    return [m for m in WRITE_METHODS if m in cls.http_method_names and hasattr(cls, m)]


def write_routes() -> list[tuple[str, str, str, str]]:
    table = []
    for route, url, cls, actions in _api_routes():
        if route in PUBLIC_ROUTES:
            continue
        for method in _write_methods(cls, actions):
            table.append((method, url, getattr(cls, "write_role", ADMIN), cls.__name__))
    return table


WRITES = write_routes()


def test_the_table_of_writes_is_complete_and_only_login_is_public():
    """Guards the table itself: every known write is in it, and no route but the login ones is AllowAny."""
    found = {(m, u) for m, u, _role, _cls in WRITES}
    expected = {
        ("post", f"{V1}/database/backup/full"),
        ("delete", f"{V1}/database/backups/{SAMPLE_ARG}"),
        ("post", f"{V1}/database/backups/{SAMPLE_ARG}/restore"),
        ("post", f"{V1}/verification/verify/{SAMPLE_ARG}"),
        ("post", f"{V1}/verification/verify-all"),
        ("post", f"{V1}/database/targets/"),
        ("put", f"{V1}/database/targets/999999/"),
        ("patch", f"{V1}/database/targets/999999/"),
        ("delete", f"{V1}/database/targets/999999/"),
        ("post", f"{V1}/storage/locations/"),
        ("put", f"{V1}/storage/locations/999999/"),
        ("patch", f"{V1}/storage/locations/999999/"),
    }
    assert expected <= found, expected - found
    # No write is open to a viewer: the least a write may need is the operator role.
    assert all(RANK[role] >= RANK[OPERATOR] for _m, _u, role, _v in WRITES), WRITES
    public = set()
    for route, _url, cls, _actions in _api_routes():
        perms = getattr(cls, "permission_classes", None) or []
        if any(p is AllowAny or (isinstance(p, type) and issubclass(p, AllowAny)) for p in perms):
            public.add(route)
    assert public == PUBLIC_ROUTES


@pytest.mark.parametrize("method,url,role,view", WRITES, ids=[f"{m} {u}" for m, u, _r, _v in WRITES])
def test_every_api_write_refuses_anonymous_and_lower_roles(api_as, method, url, role, view):
    r = getattr(APIClient(), method)(url, {}, format="json")
    assert r.status_code == 401, (view, r.status_code)
    for lower in [None, *[name for name, rank in RANK.items() if rank < RANK[role]]]:
        client = api_as(lower)
        client.raise_request_exception = False
        r = getattr(client, method)(url, {}, format="json")
        assert r.status_code == 403, (view, lower, r.status_code, r.content[:200])
        assert "role" in r.json()["detail"]
    # The role it needs gets past the check (the empty body or unknown id then decides: 400 or 404).
    client = api_as(role)
    client.raise_request_exception = False
    r = getattr(client, method)(url, {}, format="json")
    assert r.status_code in (400, 404), (view, role, r.status_code, r.content[:300])


def test_every_api_read_needs_a_role(api_as):
    reads = [(url, cls.__name__) for route, url, cls, actions in _api_routes()
             if route not in PUBLIC_ROUTES and ("get" in (actions or {}) or (actions is None and hasattr(cls, "get")))]
    assert len(reads) >= 8
    nobody = api_as(None)
    for url, view in reads:
        assert APIClient().get(url).status_code == 401, view
        assert nobody.get(url).status_code == 403, view


# --- 2b. Console writes refuse a viewer ---------------------------------------------------------------


@pytest.fixture
def cheap_backup(db):
    """A target that is never connected to, with a backup marked succeeded (enough for the role checks)."""
    target = save_target(target=DatabaseTarget(name="cheap", host="db.invalid", dbname="cheap", user="u"),
                         actor=SYSTEM)
    backup = backup_services.request_database_backup(target=target, actor=SYSTEM)
    Backup.objects.filter(pk=backup.pk).update(status=BackupStatus.SUCCEEDED)
    return backup


def _browser(role: str | None, name: str) -> Client:
    c = Client()
    c.force_login(make_user(name, role))
    return c


def test_console_posts_refuse_a_viewer_and_create_no_job(cheap_backup):
    target_pk, backup_pk = cheap_backup.database_target_id, cheap_backup.pk
    viewer = _browser(VIEWER, "vera")
    jobs_before = Job.objects.count()
    backups_before = Backup.objects.count()
    assert viewer.post(f"/targets/{target_pk}/backup/", {"format": "custom"}).status_code == 403
    assert viewer.post(f"/backups/{backup_pk}/verify/", {"level": "exists"}).status_code == 403
    r = viewer.post(f"/backups/{backup_pk}/", {"target": "cheap", "dbname": "x", "create": "on"})
    assert r.status_code == 403 and b"needs the" in r.content  # the role needed, said on a 403 page
    nobody = _browser(None, "nora")
    assert nobody.post(f"/targets/{target_pk}/backup/").status_code == 403
    assert nobody.post(f"/backups/{backup_pk}/verify/").status_code == 403
    assert nobody.post(f"/backups/{backup_pk}/", {"target": "cheap", "dbname": "x"}).status_code == 403
    assert Job.objects.count() == jobs_before and Backup.objects.count() == backups_before

    # Control: the roles that may do these things do get a job from the very same requests.
    operator = _browser(OPERATOR, "otto")
    r = operator.post(f"/backups/{backup_pk}/verify/", {"level": "exists"})
    assert r.status_code == 302 and Job.objects.filter(type="verify.backups").count() == 1
    admin = _browser(ADMIN, "ada")
    r = admin.post(f"/backups/{backup_pk}/", {"target": "cheap", "dbname": "x", "create": "on"})
    assert r.status_code == 302 and Job.objects.filter(type="restore.database").count() == 1


# --- 3. CSRF on session-authenticated writes -------------------------------------------------------------


def test_console_backup_without_csrf_token_is_403_and_creates_nothing(target):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user("otto", OPERATOR))
    r = browser.post(f"/targets/{target.pk}/backup/", {"format": "custom"})
    assert r.status_code == 403
    assert b"CSRF" in r.content
    r = browser.post(f"/targets/{target.pk}/backup/", {"format": "custom", "csrfmiddlewaretoken": "forged" * 6})
    assert r.status_code == 403
    assert not Backup.objects.exists() and not Job.objects.exists()

    # With the token from the dashboard's form it works.
    page = browser.get("/")
    token = page.context["csrf_token"]
    r = browser.post(f"/targets/{target.pk}/backup/", {"format": "custom", "csrfmiddlewaretoken": str(token)})
    assert r.status_code == 302, r.content[:300]
    assert Backup.objects.get().status == BackupStatus.SUCCEEDED


def test_console_verify_and_restore_without_csrf_token_are_403(cheap_backup):
    admin = Client(enforce_csrf_checks=True)
    admin.force_login(make_user("ada", ADMIN))
    assert admin.post(f"/backups/{cheap_backup.pk}/verify/", {"level": "exists"}).status_code == 403
    r = admin.post(f"/backups/{cheap_backup.pk}/", {"target": "cheap", "dbname": "x", "create": "on"})
    assert r.status_code == 403
    assert not Job.objects.exists()


def test_session_authenticated_api_write_without_csrf_token_is_403(target):
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(make_user("otto", OPERATOR))
    assert api.get(f"{V1}/database/backups").status_code == 200  # reads need no token
    r = api.post(f"{V1}/database/backup/full", {"target": "sample"}, format="json")
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]
    r = api.post(f"{V1}/database/backup/full", {"target": "sample"}, format="json", HTTP_X_CSRFTOKEN="x" * 64)
    assert r.status_code == 403
    assert not Backup.objects.exists() and not Job.objects.exists()

    api.get("/")  # the dashboard sets the CSRF cookie
    token = api.cookies[settings.CSRF_COOKIE_NAME].value
    r = api.post(f"{V1}/database/backup/full", {"target": "sample"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 202, r.content
    assert Backup.objects.count() == 1


def test_jwt_authenticated_api_write_needs_no_csrf_token(target):
    """The other half of the rule: a bearer token is not ambient, so no CSRF token is asked for."""
    make_user("otto", OPERATOR)
    api = APIClient(enforce_csrf_checks=True)
    access = api.post(TOKEN, {"username": "otto", "password": PASSWORD}, format="json").json()["access"]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    r = api.post(f"{V1}/database/backup/full", {"target": "sample"}, format="json")
    assert r.status_code == 202, r.content


def test_access_token_of_a_deactivated_or_deleted_user_is_401():
    from django.contrib.auth.models import User

    ann, bob = _tokens("ann")["access"], _tokens("bob")["access"]
    assert _get(ann).status_code == 200 and _get(bob).status_code == 200
    User.objects.filter(username="ann").update(is_active=False)
    User.objects.filter(username="bob").delete()
    _assert_refused(_get(ann))
    _assert_refused(_get(bob))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the test settings' short key
def test_token_signed_with_the_right_key_but_another_algorithm_is_401():
    """The accepted algorithm is pinned: HS512 with the very signing key is refused too."""
    claims = _claims(_tokens()["access"])
    _assert_refused(_get(jwt.encode(claims, _signing_key(), algorithm="HS512")))
    _assert_refused(_get(jwt.encode(claims, _signing_key(), algorithm="HS384")))

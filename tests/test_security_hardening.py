"""Web hardening: production settings (secure cookies, HSTS, CSP, frame and referrer policies), no inline script
anywhere the CSP would block it, and login lockout (django-axes) on the admin login and the token endpoint."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from tests.helpers import PASSWORD, make_user

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def production_settings() -> dict:
    """The settings a server with DEBUG off gets by default (a fresh interpreter, only the required secrets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "SESSION_", "CSRF_", "CONTENT_"))}
    env.update(DEBUG="false", SECRET_KEY="x" * 50, BACKUP_ENCRYPTION_KEYS=os.environ["BACKUP_ENCRYPTION_KEYS"],
               DJANGO_SETTINGS_MODULE="backupsite.settings")
    code = ("import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) for k in "
            "['SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_REFERRER_POLICY', "
            "'X_FRAME_OPTIONS', 'CONTENT_SECURITY_POLICY', 'SESSION_COOKIE_HTTPONLY', 'APPROVAL_REQUIRED_ACTIONS']}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_production_defaults_are_secure():
    s = production_settings()
    assert s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"] and s["SESSION_COOKIE_HTTPONLY"]
    assert s["SECURE_HSTS_SECONDS"] >= 31536000
    assert s["X_FRAME_OPTIONS"] == "DENY" and s["SECURE_REFERRER_POLICY"] == "same-origin"
    assert "script-src 'self'" in s["CONTENT_SECURITY_POLICY"] and "unsafe-inline" not in \
        s["CONTENT_SECURITY_POLICY"].split("script-src")[1].split(";")[0]
    assert s["APPROVAL_REQUIRED_ACTIONS"] == []  # off unless the production profile turns it on


def test_console_and_admin_answers_carry_the_headers(settings, admin_client):
    settings.SECURE_HSTS_SECONDS = 31536000
    for url in ("/", "/admin/", "/approvals/"):
        r = admin_client.get(url, secure=True)
        assert r.status_code == 200, url
        assert "script-src 'self'" in r["Content-Security-Policy"]
        assert r["X-Frame-Options"] == "DENY" and r["Referrer-Policy"] == "same-origin"
        assert r["Strict-Transport-Security"].startswith("max-age=31536000")
        assert r["X-Content-Type-Options"] == "nosniff"


def test_no_inline_script_in_templates():
    """The CSP allows scripts from this server only: an inline <script> or on*= handler would not run."""
    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag:
                offenders.append(f"{path}: {tag}")
        if re.search(r"\son[a-z]+\s*=", text) or "javascript:" in text:
            offenders.append(f"{path}: event handler attribute")
    assert not offenders, offenders


def test_admin_login_is_locked_after_too_many_failures(settings):
    settings.AXES_FAILURE_LIMIT = 3
    make_user("mallory-target", "admin")
    User.objects.filter(username="mallory-target").update(is_staff=True)
    client = Client()
    codes = [client.post("/admin/login/", {"username": "mallory-target", "password": "wrong"}).status_code
             for _ in range(3)]
    assert codes == [200, 200, 429]  # the failure that reaches the limit already answers the lockout
    # The right password, after the limit: refused, not logged in.
    r = client.post("/admin/login/", {"username": "mallory-target", "password": PASSWORD})
    assert r.status_code in (403, 429) and "_auth_user_id" not in client.session
    # Another account from the same address is not locked.
    make_user("other-admin", "admin")
    User.objects.filter(username="other-admin").update(is_staff=True)
    r = Client().post("/admin/login/", {"username": "other-admin", "password": PASSWORD})
    assert r.status_code == 302


def test_token_endpoint_is_locked_after_too_many_failures(settings):
    settings.AXES_FAILURE_LIMIT = 3
    make_user("tokenuser", "viewer")
    client = APIClient()
    for _ in range(3):
        assert client.post("/v1/auth/token/", {"username": "tokenuser", "password": "nope"},
                           format="json").status_code == 401
    r = client.post("/v1/auth/token/", {"username": "tokenuser", "password": PASSWORD}, format="json")
    assert r.status_code == 429 and "failed logins" in r.json()["detail"] and "access" not in r.json()


def test_a_successful_admin_login_resets_the_count(settings):
    settings.AXES_FAILURE_LIMIT = 3
    make_user("forgetful", "admin")
    User.objects.filter(username="forgetful").update(is_staff=True)
    for _ in range(2):
        client = Client()
        codes = [client.post("/admin/login/", {"username": "forgetful", "password": "nope"}).status_code
                 for _ in range(2)]
        assert codes == [200, 200]
        assert client.post("/admin/login/", {"username": "forgetful", "password": PASSWORD}).status_code == 302


def test_a_token_obtained_clears_the_failures_counted_before_it(settings):
    """Failures below the limit, then a good password: the count starts again, as after an admin login."""
    settings.AXES_FAILURE_LIMIT = 3
    make_user("forgetful", "viewer")
    client = APIClient()

    def token(password):
        return client.post("/v1/auth/token/", {"username": "forgetful", "password": password}, format="json")

    assert [token("nope").status_code for _ in range(2)] == [401, 401]
    assert token(PASSWORD).status_code == 200
    assert User.objects.get(username="forgetful").last_login is not None
    # Two more failures do not reach the limit of three: the earlier two were cleared.
    assert [token("nope").status_code for _ in range(2)] == [401, 401]
    assert token(PASSWORD).status_code == 200

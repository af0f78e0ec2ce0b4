"""Shared helpers of the API tests (imported by the test_api_* modules): users per role and JWT clients."""
import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery-staple-42"
V1 = "/v1/backup-recovery"


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


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The API tests create users and log in a lot: a cheap hasher keeps them fast (never in production)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api_as(db):
    """api_as("operator") -> APIClient authenticated by JWT as a user with that role (None: no role)."""

    def make(role: str | None, username: str | None = None) -> APIClient:
        name = username or f"{role or 'norole'}-user"
        if not User.objects.filter(username=name).exists():
            make_user(name, role)
        return jwt_client(name)

    return make

"""Foundation, second pass: storage kinds come from the backend registry. A kind without a backend (ftp, say) is
refused with 400 when the location is created, in the API and in the admin form."""
import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.core.errors import UserError
from apps.core.services import SYSTEM
from apps.storage import backends
from apps.storage.backends.local import LocalBackend
from apps.storage.models import StorageLocation
from apps.storage.services import save_location
from tests.helpers import PASSWORD, V1

pytestmark = pytest.mark.django_db

LOCATIONS = f"{V1}/storage/locations/"


@pytest.mark.parametrize("kind", ["ftp", "sftp"])
def test_api_refuses_a_kind_without_backend(api_as, kind):
    r = api_as("admin").post(LOCATIONS, {"name": "cloud", "kind": kind, "bucket": "b"}, format="json")
    assert r.status_code == 400, r.content
    assert "kind" in r.json() and "no backend" in r.json()["kind"][0]
    assert not StorageLocation.objects.filter(name="cloud").exists()


def test_api_accepts_a_registered_kind_and_refuses_changing_to_an_unknown_one(api_as, tmp_path):
    admin = api_as("admin")
    r = admin.post(LOCATIONS, {"name": "disk", "kind": "local", "path": str(tmp_path)}, format="json")
    assert r.status_code == 201, r.content
    r = admin.patch(f"{LOCATIONS}{r.json()['id']}/", {"kind": "ftp"}, format="json")
    assert r.status_code == 400
    assert StorageLocation.objects.get(name="disk").kind == "local"


def test_admin_form_offers_only_registered_kinds(tmp_path):
    User.objects.create_superuser("root", "root@example.invalid", PASSWORD)
    browser = Client()
    browser.login(username="root", password=PASSWORD)
    page = browser.get("/admin/storage/storagelocation/add/").content.decode()
    assert all(f'value="{kind}"' in page for kind in ("local", "s3", "azure", "gcs")) and 'value="ftp"' not in page
    r = browser.post("/admin/storage/storagelocation/add/", {"name": "cloud", "kind": "ftp", "path": "/x"})
    assert r.status_code == 200 and "Select a valid choice" in r.content.decode()
    assert not StorageLocation.objects.filter(name="cloud").exists()


def test_service_refuses_unknown_kind():
    with pytest.raises(UserError, match="Unknown storage kind 'ftp'"):
        save_location(location=StorageLocation(name="g", kind="ftp"), actor=SYSTEM)


def test_a_newly_registered_backend_is_a_valid_kind_without_migration(api_as, tmp_path):
    @backends.register
    class ScratchBackend(LocalBackend):
        kind = "scratch"
        label = "Scratch disk"

    try:
        assert ("scratch", "Scratch disk") in backends.kind_choices()
        r = api_as("admin").post(LOCATIONS, {"name": "s", "kind": "scratch", "path": str(tmp_path)}, format="json")
        assert r.status_code == 201, r.content
    finally:
        backends._REGISTRY.pop("scratch")

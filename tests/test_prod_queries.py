"""No N+1 on the lists and the dashboard: the number of queries a page takes does not grow with the rows it shows.

Each endpoint is measured with a small catalog, then again after adding many more rows (a full page of each list);
the counts must be equal. Runs in both passes of `make test` (SQLite, then PostgreSQL metadata: pgmeta).
"""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.catalog_fill import fill
from tests.helpers import V1

pytestmark = pytest.mark.pgmeta

ENDPOINTS = [
    f"{V1}/database/backups",
    f"{V1}/database/targets/",
    "/v1/jobs",
    f"{V1}/monitoring/alerts",
    "/",  # the console dashboard
]


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    return len(ctx.captured_queries)


@pytest.fixture
def viewer_client(db, api_as, client):
    """A JWT client for the API and a session client for the console, both as a viewer."""
    api = api_as("viewer", "viewer-user")
    from django.contrib.auth.models import User

    client.force_login(User.objects.get(username="viewer-user"))
    return api, client


def test_list_endpoints_take_the_same_queries_for_3_rows_as_for_60(viewer_client):
    api, console = viewer_client
    fill(targets=3, backups=3, alerts=3, prefix="few")

    def measure():
        return {url: count_queries(console if url == "/" else api, url) for url in ENDPOINTS}

    measure()  # warm: content types, permission caches
    few = measure()
    grown = fill(targets=60, backups=120, alerts=60, prefix="many")
    assert grown["targets"] >= 63 and grown["backups"] >= 123 and grown["alerts"] >= 63
    many = measure()
    assert many == few, {url: (few[url], many[url]) for url in ENDPOINTS if few[url] != many[url]}
    # And small in absolute terms: a list is a handful of queries (auth, count, page, prefetches); the dashboard
    # composes about twenty sections (backups, documents, storage, alerts, DR), each a constant aggregate.
    assert max(n for url, n in many.items() if url != "/") <= 10, many
    assert many["/"] <= 50, many


def test_job_list_endpoint_exists_under_the_v1_prefix(viewer_client):
    """The job list path used above is the published one (a wrong path would make the comparison vacuous)."""
    api, _console = viewer_client
    fill(targets=1, backups=2, prefix="one")
    r = api.get("/v1/jobs")
    assert r.status_code == 200 and r.json()["count"] >= 2

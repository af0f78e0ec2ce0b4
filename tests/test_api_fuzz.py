"""The whole API under schemathesis: generated requests, valid and invalid (bodies, queries, path ids), to
every operation of the OpenAPI schema, as an admin; no answer may be a 5xx or differ from what the schema
says (status codes, content types, headers, bodies). Derandomized, so a failure reproduces.

Ids are generated, so detail operations mostly meet unknown ids (404): the fuzzing proves the error paths
and input handling, the feature tests prove the paths with real rows.
"""
import pytest
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from rest_framework_simplejwt.tokens import RefreshToken

from tests.helpers import make_user

pytestmark = [
    pytest.mark.django_db,
    # A cache key memcached would refuse is a 500 in production (a LocMemCache only warns): make it one here.
    pytest.mark.filterwarnings("error::django.core.cache.backends.base.CacheKeyWarning"),
]

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = get_wsgi_application()


@pytest.fixture
def admin_headers():
    # A token made directly: logging in once per operation would meet the login throttle.
    token = RefreshToken.for_user(make_user("fuzz-admin", "admin")).access_token
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_no_server_error_and_schema_conformance(case, admin_headers):
    case.call_and_validate(headers=admin_headers, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
        response_headers_conformance,
    ])

"""Login lockout (django-axes): after AXES_FAILURE_LIMIT failed logins for a username from an address, that
pair is refused, even with the right password, for AXES_COOLOFF_TIME. It guards every login that goes through
django.contrib.auth.authenticate with a request: the admin (and console) login form and the API's token
endpoint, where the refusal is a 429 with a message (the DRF throttle in apps/core/auth.py counts requests
as well).

A login without a request (a management command, the test client's `login()`) has no address to count and
is not from the web: it is left to the next backend.
"""
from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from rest_framework.exceptions import Throttled


class LockoutBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        try:
            return super().authenticate(request, username=username, password=password, **kwargs)
        except AxesBackendPermissionDenied:
            from rest_framework.request import Request

            if isinstance(request, Request):  # the API: a clear 429, not "no active account"
                raise Throttled(detail="Too many failed logins for this account from this address; try again "
                                       "later.") from None
            raise

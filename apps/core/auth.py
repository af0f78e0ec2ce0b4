"""Login hardening for the JWT endpoints: throttled token requests and tokens revoked by a password change.

Revocation uses simplejwt's revoke check (`CHECK_REVOKE_TOKEN`): every token carries a hash of the user's
password hash, so changing the password invalidates every access token at once. simplejwt's refresh
serializer does not look at that claim, so `RevocableTokenRefreshSerializer` does: a refresh token
issued before a password change no longer yields access tokens.

Throttle counters live in the default cache. The default cache (LocMemCache) is per process: with
several web server processes, each counts on its own; set CACHE_URL to a shared cache (the database
cache, docs/OPERATIONS.md) to count across processes.
"""
import hashlib
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.throttling import SimpleRateThrottle
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.utils import get_md5_hash_password


class LoginRateThrottle(SimpleRateThrottle):
    """Token requests per client address (LOGIN_THROTTLE_RATE, e.g. "10/min")."""

    scope = "login"

    def get_rate(self):
        return settings.LOGIN_THROTTLE_RATE or None

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginUsernameRateThrottle(LoginRateThrottle):
    """Token requests per username, whatever the address: guessing one account from many addresses."""

    scope = "login-user"

    def get_cache_key(self, request, view):
        # A body that cannot be parsed raises here; the API's error handler answers 400 or 413.
        username = request.data.get("username") if hasattr(request.data, "get") else None
        if not isinstance(username, str) or not username:
            return None
        # Hashed: a username may hold spaces or control characters, which memcached refuses in a key.
        ident = hashlib.sha256(username.casefold()[:150].encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


class LoggedInTokenObtainSerializer(TokenObtainPairSerializer):
    """A token obtained is a login: `user_logged_in` clears the lockout's failure count for this user and
    address (AXES_RESET_ON_SUCCESS) and sets last_login, as the admin's login form does. Without it, failures
    before a successful token request kept counting towards the lockout."""

    def validate(self, attrs):
        from django.contrib.auth.signals import user_logged_in

        data = super().validate(attrs)
        request = self.context.get("request")
        if request is not None:
            user_logged_in.send(sender=type(self.user), request=request, user=self.user)
        return data


class RevocableTokenRefreshSerializer(TokenRefreshSerializer):
    """Refresh, unless the user is gone, inactive, or changed their password since the token was issued."""

    default_error_messages = {
        **TokenRefreshSerializer.default_error_messages,
        "revoked": "This token was revoked (the password changed); log in again.",
    }

    def validate(self, attrs):
        refresh = self.token_class(attrs["refresh"])
        user_id = refresh.payload.get(jwt_settings.USER_ID_CLAIM)
        user = get_user_model().objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first() if user_id else None
        if user is None or not jwt_settings.USER_AUTHENTICATION_RULE(user):
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account")
        if refresh.payload.get(jwt_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(self.error_messages["revoked"], "token_revoked")
        return super().validate(attrs)

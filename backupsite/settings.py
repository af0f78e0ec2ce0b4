"""Settings, read only from the environment (django-environ).

Secrets may also come from files: every variable FOO can be given as FOO_FILE
holding a path, so they never need to sit in a process environment listing.

BACKUPSITE_ENV_FILE names an environment file (KEY=value lines) read first, its values winning over
the process environment: PostgreSQL runs wal_push / wal_fetch with its own environment, so the
archive_command line carries this one path instead of the settings (see archive_config).
"""
import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from backupsite import startup

startup.trim()  # before Django imports the apps: see backupsite/startup.py

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

ENV_FILE = os.environ.get("BACKUPSITE_ENV_FILE", "")
if ENV_FILE:
    try:
        with open(ENV_FILE) as _fh:
            environ.Env.read_env(_fh, overwrite=True)
    except OSError as exc:
        raise ImproperlyConfigured(f"Cannot read BACKUPSITE_ENV_FILE {ENV_FILE}: {exc.strerror}.") from None


def secret(name: str, default: str = "") -> str:
    """Read NAME, or the file named by NAME_FILE; trailing newline stripped."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        return Path(path).read_text().strip()
    return env.str(name, default=default)


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-debug-only-key"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if not DEBUG else ["*"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "backupsite.admin_app.AdminConfig",  # django.contrib.admin, its admin modules imported by the URLconf
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_q",
    "axes",
    "apps.core",
    "apps.storage",
    "apps.pipeline",
    "apps.databases",
    "apps.backups",
    "apps.verification",
    "apps.retention",
    "apps.recovery",
    "apps.documents",
    "apps.monitoring",
    "apps.jobs",
    "apps.approvals",
    "apps.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves STATIC_ROOT (manage.py collectstatic) from gunicorn itself: no separate static file server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.ContentSecurityPolicyMiddleware",
    # Last: turns a locked-out login (django-axes) into its refusal page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "backupsite.urls"
WSGI_APPLICATION = "backupsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Metadata database: SQLite by default (one machine); production points DATABASE_URL (or DATABASE_URL_FILE, as
# it holds a password) at PostgreSQL, postgres://user:pass@host:5432/name (psycopg 3).
DATABASES = {"default": env.db_url_config(secret("DATABASE_URL")
                                          or f"sqlite:///{VAR_DIR / 'backupsite.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The job worker and the web server write concurrently; wait instead of failing.
    # WAL lets the console read while a job writes its progress.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    # Persistent connections (seconds; 0 closes each after its request), checked before reuse so a restarted
    # metadata server costs one failed check, not a failed request.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic also writes .gz copies, which whitenoise sends to clients that accept them. Not the manifest
# (hashed names) storage: a template rendering {% static %} would then fail wherever collectstatic has not run.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGIN_URL = "/admin/login/"

# --- Web security (production defaults follow DEBUG off) -------------------------------------------------
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# HSTS: browsers keep to HTTPS for this long once they saw it (0 turns it off; DEBUG defaults to 0).
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # usually the TLS proxy's job
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto: SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https
_proxy_ssl = env.list("SECURE_PROXY_SSL_HEADER", default=[])
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl) if len(_proxy_ssl) == 2 else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy of every response (apps/core/middleware.py): scripts and styles from this server only.
CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default="default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
            "frame-ancestors 'none'",
)
# Login lockout (django-axes, apps/core/lockout.py): this many failures of a username from one address lock
# that pair out for LOGIN_LOCKOUT_MINUTES; a successful login resets the count.
AUTHENTICATION_BACKENDS = ["apps.core.lockout.LockoutBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# --- Backups -----------------------------------------------------------------

BACKUP_LOCAL_ROOT = Path(env.str("BACKUP_LOCAL_ROOT", default=str(VAR_DIR / "backups")))
# Data directories made by point-in-time recoveries requested through the API (the CLI takes any path).
RECOVERY_ROOT = Path(env.str("RECOVERY_ROOT", default=str(VAR_DIR / "recoveries")))
# Document versions restored through the API go into a new directory under this one (the CLI takes any path).
DOCUMENTS_RESTORE_ROOT = Path(env.str("DOCUMENTS_RESTORE_ROOT", default=str(VAR_DIR / "document-restores")))
# "keyid:base64-32-bytes,..." — the first key encrypts new backups; the others
# stay available so older backups remain readable after a rotation.
BACKUP_ENCRYPTION_KEYS = secret("BACKUP_ENCRYPTION_KEYS")
if not BACKUP_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "BACKUP_ENCRYPTION_KEYS must be set when DEBUG is off: backups are encrypted at rest in production."
    )
BACKUP_COMPRESSION = env.str("BACKUP_COMPRESSION", default="zstd")
# zstd worker threads (as `zstd -T2`): 2 where there are 2 CPUs or more; 0 compresses in the backup's own thread.
_zstd_threads = env.str("BACKUP_ZSTD_THREADS", default="").strip()  # empty: the default
BACKUP_ZSTD_THREADS = max(0, int(_zstd_threads)) if _zstd_threads else (2 if (os.cpu_count() or 1) >= 2 else 0)
# Processes that write a physical full read from a local data directory to a local location (each a share
# of the files as an artifact of its own): 2 where there are 2 CPUs or more; 1 writes one base.tar.
BACKUP_PROCESSES = max(1, env.int("BACKUP_PROCESSES", default=2 if (os.cpu_count() or 1) >= 2 else 1))
# Incrementals store changed relation files as sub-page deltas against the parent's version (pages.delta): on
# pgbench ~10 % of the full where whole files are ~98 %; the restore applies them in batches, in two processes
# (docs/DECISIONS.md, docs/BENCHMARKS.md). Off: changed files stored whole.
BACKUP_PAGE_DELTAS = env.bool("BACKUP_PAGE_DELTAS", default=True)
# Directory holding pg_dump, pg_restore, psql, initdb... (empty: use PATH).
PG_BIN_DIR = env.str("PG_BIN_DIR", default="")
# A backup's lease on its target is renewed by the job heartbeat; one not renewed for this long is stale
# (a holder on this host whose process is gone is stale at once).
BACKUP_LOCK_STALE_SECONDS = env.int("BACKUP_LOCK_STALE_SECONDS", default=60)

# --- Verification and retention (apps/verification, apps/retention) ------------
# Where restore-level verifications build their scratch clusters (each named after its job, removed after
# use; leftovers of a killed run are removed by the next run). The postgres user must be able to reach it.
VERIFY_SCRATCH_ROOT = Path(env.str("VERIFY_SCRATCH_ROOT", default=str(VAR_DIR / "verify-scratch")))
# Tables up to this size (pg_table_size, bytes) get a content hash at backup time, compared by a restore check.
VERIFY_HASH_MAX_TABLE_BYTES = env.int("VERIFY_HASH_MAX_TABLE_BYTES", default=8 * 1024 * 1024)
# The level of the nightly verification of every backup (the newest of each target is also restored).
VERIFY_SCHEDULE_LEVEL = env.str("VERIFY_SCHEDULE_LEVEL", default="checksum")
# Archive of a backup whose location has no storage tiers (local disk): a verified copy to this location.
RETENTION_ARCHIVE_LOCATION = env.str("RETENTION_ARCHIVE_LOCATION", default="")

# --- Two-person approval (apps/approvals) -----------------------------------------
# Destructive actions that wait for a second admin when asked for through the API, the console or the admin
# (management commands, the scheduler and the system are trusted and pass). Names, comma-separated, or "all":
# backup.delete, backup.legal_hold.release, restore.database.existing, recovery.pitr.table_into_live,
# recovery.failover, retention.enforce. Empty (the default, as in the demo): nothing waits. The production
# profile (docs/OPERATIONS.md) sets "all".
APPROVAL_REQUIRED_ACTIONS = env.list("APPROVAL_REQUIRED_ACTIONS", default=[])
# A request nobody decided within this many hours expires.
APPROVAL_EXPIRY_HOURS = env.int("APPROVAL_EXPIRY_HOURS", default=24)

# --- Replication (apps/backups/replication.py) ----------------------------------
# Attempts per replica copy, and the exponential backoff between them (first wait, longest wait), in seconds.
REPLICATION_ATTEMPTS = env.int("REPLICATION_ATTEMPTS", default=5)
REPLICATION_BACKOFF_SECONDS = env.float("REPLICATION_BACKOFF_SECONDS", default=2.0)
REPLICATION_BACKOFF_MAX_SECONDS = env.float("REPLICATION_BACKOFF_MAX_SECONDS", default=120.0)
# Attempts the cloud SDKs make themselves per request (inside each of ours).
STORAGE_SDK_ATTEMPTS = env.int("STORAGE_SDK_ATTEMPTS", default=3)

# --- Jobs (django-q2) ---------------------------------------------------------
# Broker: the metadata database (ORM broker, no extra service) unless REDIS_URL (or REDIS_URL_FILE) names a
# Redis server, redis://[:password@]host:6379/0; every web server and worker must use the same one.

JOB_TIMEOUT_SECONDS = env.int("JOB_TIMEOUT_SECONDS", default=6 * 3600)
# A running job stamps its row this often, whatever its work is doing...
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=5.0)
# ...and one not stamped for this long is failed as abandoned (its worker was killed or cut off).
JOB_STALE_SECONDS = env.int("JOB_STALE_SECONDS", default=60)
Q_CLUSTER = {
    "name": "backupsite",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": JOB_TIMEOUT_SECONDS,
    "retry": JOB_TIMEOUT_SECONDS + 600,
    "max_attempts": 1,
    "catch_up": False,
    "sync": env.bool("Q_SYNC", default=False),
    "poll": 1,
    "save_limit": 1000,
    "label": "Task queue",
}
REDIS_URL = secret("REDIS_URL")
if REDIS_URL:
    del Q_CLUSTER["orm"]
    Q_CLUSTER["redis"] = REDIS_URL

# --- Monitoring and alerting (apps/monitoring) -------------------------------

# Outbox retries: the wait doubles from the base up to the cap; a channel that is down is never given up on.
MONITORING_RETRY_BASE_SECONDS = env.float("MONITORING_RETRY_BASE_SECONDS", default=30.0)
MONITORING_RETRY_MAX_SECONDS = env.float("MONITORING_RETRY_MAX_SECONDS", default=3600.0)
# Timeout of one HTTP or SMTP attempt.
MONITORING_HTTP_TIMEOUT_SECONDS = env.float("MONITORING_HTTP_TIMEOUT_SECONDS", default=10.0)
# Links in notifications point here, e.g. https://backups.example.com (empty: no link).
CONSOLE_BASE_URL = env.str("CONSOLE_BASE_URL", default="")
# /metrics: with a token, scrapers send "Authorization: Bearer <token>"; without one, a signed-in viewer may read
# it, and METRICS_PUBLIC=true opens it to anyone who reaches the server.
METRICS_TOKEN = secret("METRICS_TOKEN")
METRICS_PUBLIC = env.bool("METRICS_PUBLIC", default=False)
# /readyz: the job worker counts as alive if it finished a task this recently (the dead-job sweep runs every minute).
READYZ_WORKER_SECONDS = env.int("READYZ_WORKER_SECONDS", default=180)
# Default SMTP server of email channels (a channel may name its own).
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="backupsite@localhost")

# --- API ---------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.core.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # `?format=` is a filter (a backup's format), not a renderer switch.
    "URL_FORMAT_OVERRIDE": None,
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=1)),
    "AUTH_HEADER_TYPES": ("Bearer",),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Backup and disaster-recovery API",
    "DESCRIPTION": "Backups, verification, restore and jobs for PostgreSQL databases and document stores.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for a choice set used by several fields (a target's default_method, a backup request's method).
    "ENUM_NAME_OVERRIDES": {"BackupMethodEnum": "apps.databases.models.BackupMethod",
                            "SeverityEnum": "apps.monitoring.models.Severity",
                            "DocumentVersionStatusEnum": "apps.documents.models.VersionStatus",
                            "InterfaceEnum": "apps.core.models.Interface"},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "apps.core.schema.add_common_errors",
                           "apps.approvals.schema.add_approval_answers"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"hide_request_paths": {"()": "apps.core.logfilters.HideRequestPaths"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # django-q2 logs as "django-q": every scheduled sweep at INFO would drown the log.
    # urllib3's request lines (DEBUG) carry URL paths, which are secrets for Slack and webhook channels.
    "loggers": {"django-q": {"level": "WARNING"},
                "urllib3.connectionpool": {"filters": ["hide_request_paths"]}},
}

# --- Request limits, login throttling, token revocation (security block) -----

# Bodies above this answer 413 (the API's bodies are small); more fields than this in a query string or
# form answer 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env.int("DATA_UPLOAD_MAX_NUMBER_FIELDS", default=1000)
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = [
    "apps.core.parsers.SafeJSONParser",
    "rest_framework.parsers.FormParser",
    "rest_framework.parsers.MultiPartParser",
]
# Reverse proxies in front of the server that append to X-Forwarded-For (0: use the peer address; the
# header is then ignored, so a client cannot pick its own address to escape the throttle).
REST_FRAMEWORK["NUM_PROXIES"] = env.int("NUM_PROXIES", default=0)
# Token requests per client address and per username (DRF rate: N/sec, N/min, N/hour, N/day); "" turns it off.
LOGIN_THROTTLE_RATE = env.str("LOGIN_THROTTLE_RATE", default="10/min")
# Throttle counters live here. The default (local memory) is per process: with several web server
# processes use a shared cache, e.g. CACHE_URL=dbcache://backupsite_cache and `manage.py createcachetable`.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
# A password change revokes every token of that user (access and refresh).
SIMPLE_JWT.update({
    "CHECK_REVOKE_TOKEN": True,
    "TOKEN_REFRESH_SERIALIZER": "apps.core.auth.RevocableTokenRefreshSerializer",
    "TOKEN_OBTAIN_SERIALIZER": "apps.core.auth.LoggedInTokenObtainSerializer",
})

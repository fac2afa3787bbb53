"""Settings, all from the environment (django-environ); see .env.example.

With no environment at all Scanbench runs on its *embedded default*: SQLite, a file-system
Celery broker, local file storage under ``var/``. Production differs only by environment
variables (``DATABASE_URL``, ``CELERY_BROKER_URL``, ``SCANBENCH_STORAGE``...), and setting
``DEBUG=false`` switches on the secure defaults (secure cookies, HSTS, SSL redirect).
"""

from pathlib import Path
from typing import Any

import django_stubs_ext
import environ

# Lets admin classes and querysets be subscripted for the type checker at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env_file = BASE_DIR / ".env"
if env_file.exists():
    environ.Env.read_env(str(env_file))

VAR_DIR = Path(env("SCANBENCH_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=True)
# The embedded default generates nothing secret; production must set SECRET_KEY (system check).
SECRET_KEY = env("SECRET_KEY", default="embedded-default-insecure-key-set-SECRET_KEY-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "challenges",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'scanbench.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker share one SQLite file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Public files (challenge inputs of both splits, train labels, submissions' own files) live in
# MEDIA_ROOT; hidden test labels live in PRIVATE_ROOT, which no URL serves.
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
SCANBENCH_PRIVATE_ROOT = Path(env("SCANBENCH_PRIVATE_ROOT", default=str(VAR_DIR / "private")))
# "default" holds submissions' files; SCANBENCH_STORAGE (section "Object storage") may replace it.
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # API clients and the CLI: "Authorization: Token <key>" (one hash lookup, no PBKDF2).
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    # One error shape for every 4xx: {"detail", "code", "field"} (docs/api.md).
    "EXCEPTION_HANDLER": "challenges.api_errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# The OpenAPI schema (/api/schema/) and its documentation page (/api/docs/), whose Swagger UI
# assets come from the pinned drf-spectacular-sidecar package as static files: no CDN.
SPECTACULAR_SETTINGS = {
    "TITLE": "Scanbench API",
    "DESCRIPTION": "Challenges, data, submissions and leaderboards, addressed by slugs. "
    "Authenticate with the header `Authorization: Token <key>` (POST /api/token/). Every 4xx "
    'body is {"detail", "code", "field"}. See docs/api.md.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "MembershipStatusEnum": "challenges.models.MembershipStatus",
        "PhaseStatusEnum": "challenges.serializers_v1.PHASE_STATUSES",
        "EvaluationStateEnum": "challenges.models.EvaluationState",
    },
}

# --- Celery -------------------------------------------------------------------------------------
# Embedded default: kombu's file-system transport, so no broker server is needed.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem"):
    for sub in ("out", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    }
# Results live in the database; Celery's result backend is not used.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ROUTES = ("challenges.celery.route_task",)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
# Celery's Django fix-up closes every database connection before and after each task, so each
# task paid for a new PostgreSQL connection (a backend process started, authenticated and its
# caches filled). With this, it closes them only every this many tasks; between tasks the
# worker applies Django's own rule instead (config/celery.py): a connection is closed when it
# is older than CONN_MAX_AGE or unusable after an error, and checked before its next use.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)

# --- Scanbench ----------------------------------------------------------------------------------
# Largest accepted upload and largest uncompressed size of any zip the platform opens.
SCANBENCH_MAX_UPLOAD_BYTES = env.int("SCANBENCH_MAX_UPLOAD_BYTES", default=2 * 1024**3)
SCANBENCH_MAX_UNZIPPED_BYTES = env.int("SCANBENCH_MAX_UNZIPPED_BYTES", default=8 * 1024**3)
# Largest challenge bundle an organizer uploads from the browser or the API (a zip).
SCANBENCH_MAX_BUNDLE_UPLOAD_BYTES = env.int(
    "SCANBENCH_MAX_BUNDLE_UPLOAD_BYTES", default=2 * 1024**3
)
# Sandbox backend for model and container submissions: auto, docker, bwrap or none.
SCANBENCH_SANDBOX_BACKEND = env("SCANBENCH_SANDBOX_BACKEND", default="auto")

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="scanbench@localhost")

if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_CONTENT_TYPE_NOSNIFF = True

# Web hardening (issue 8) -------------------------------------------------------------------------
# See docs/security.md, section "Web".
# Proxy trust: X-Forwarded-Proto (is the request HTTPS?) and X-Forwarded-For (the client's
# address, for throttling) are believed only when a TLS-terminating proxy fronts the web process
# and is the only way to reach it. platform/gunicorn.conf.py reads the same variable.
SCANBENCH_BEHIND_PROXY = env.bool("SCANBENCH_BEHIND_PROXY", default=False)
if SCANBENCH_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Container health checks call /healthz over plain HTTP at 127.0.0.1: no HTTPS redirect, and the
# first middleware answers it before the host is checked against ALLOWED_HOSTS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# /metrics (Prometheus): for "Authorization: Bearer <token>" when set, else loopback only.
SCANBENCH_METRICS_TOKEN = env("SCANBENCH_METRICS_TOKEN", default="")
MIDDLEWARE.insert(0, "challenges.middleware.HealthCheckMiddleware")
# Content-Security-Policy without outside origins (challenges/middleware.py); on by default.
SCANBENCH_CSP = env.bool("SCANBENCH_CSP", default=True)
# Where Django's admin is served (a path of your own keeps scanners off its log-in page).
SCANBENCH_ADMIN_PATH = env("SCANBENCH_ADMIN_PATH", default="admin/").strip("/") + "/"
MIDDLEWARE.insert(2, "challenges.middleware.ContentSecurityPolicyMiddleware")
# Counters for log-in and API throttling; shared by every web process only on a shared cache
# (production: SCANBENCH_CACHE_URL=redis://redis:6379/1). The default is per process.
CACHES = {"default": env.cache("SCANBENCH_CACHE_URL", default="locmemcache://")}
# Failed log-ins (15-minute window) after which further attempts are refused unchecked.
SCANBENCH_LOGIN_FAILURES_PER_15MIN = env.int("SCANBENCH_LOGIN_FAILURES_PER_15MIN", default=10)
SCANBENCH_LOGIN_FAILURES_PER_ADDRESS_PER_15MIN = env.int(
    "SCANBENCH_LOGIN_FAILURES_PER_ADDRESS_PER_15MIN", default=50
)
# API rates (DRF syntax, N/sec|min|hour|day; empty: no limit): anonymous calls per client
# address, and uploads (submission create) per user, refused with 429 and Retry-After.
SCANBENCH_API_ANON_RATE = env("SCANBENCH_API_ANON_RATE", default="300/min") or None
SCANBENCH_API_UPLOAD_RATE = env("SCANBENCH_API_UPLOAD_RATE", default="60/min") or None
# POST /api/token/ per client address, signed in or not (failed passwords also count against
# the log-in throttle).
SCANBENCH_API_TOKEN_RATE = env("SCANBENCH_API_TOKEN_RATE", default="10/min") or None
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["challenges.throttles.AnonymousThrottle"]
# The client's address for throttles: the peer, or the last X-Forwarded-For entry (the one the
# trusted proxy added) behind a proxy; never an address the client chose.
REST_FRAMEWORK["NUM_PROXIES"] = 1 if SCANBENCH_BEHIND_PROXY else 0
# Form fields other than files held in memory (a comment is 500 characters); files above 1 MiB
# are streamed to a temporary file instead of memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024**2)
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=1024**2)
# -------------------------------------------------------------------------------------------------

# Logs go to stderr, as text (the embedded default) or, with SCANBENCH_LOG_FORMAT=json (what
# production sets), as one JSON object per line (challenges.log_format; docs/operations.md,
# "Logs"). Either way every record logged while a worker processes an evaluation carries its
# submission_id and evaluation_id (LogContextFilter). Celery workers use this configuration too
# when the format is json (config/celery.py); with text they keep Celery's own format.
SCANBENCH_LOG_FORMAT = env("SCANBENCH_LOG_FORMAT", default="text")
if SCANBENCH_LOG_FORMAT not in ("text", "json"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SCANBENCH_LOG_FORMAT must be 'text' or 'json'")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "log_context": {"()": "challenges.log_format.LogContextFilter"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "formatters": {
        "text": {"format": "%(message)s"},
        "json": {"()": "challenges.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": SCANBENCH_LOG_FORMAT,
            "filters": ["log_context"],
        },
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false"],
        },
    },
    "loggers": {
        # Django's own defaults would print these a second time, and not as JSON.
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {
        "task": "challenges.tasks.worker_heartbeat",
        "schedule": 60.0,
        "kwargs": {"queue": "cpu"},
    },
}

# --- Evaluation pipeline -------------------------------------------------------------------------
# A worker holds a running/scoring evaluation under a lease of SCANBENCH_LEASE_S that a thread of
# the worker renews every SCANBENCH_LEASE_RENEW_S while it works (docs/pipeline.md). The reaper
# (Celery beat, every SCANBENCH_REAPER_INTERVAL_S) takes back an evaluation whose lease lapsed
# (its worker died) and never one still renewed, however long it runs: a dead worker's evaluation
# is taken back within SCANBENCH_LEASE_S + SCANBENCH_REAPER_INTERVAL_S (35 s by default). It also
# re-sends a queued evaluation whose task was sent SCANBENCH_REQUEUE_AFTER_S ago (the broker may
# have lost it), and fails one as the platform's fault (not counted against the participant)
# once a step was delivered SCANBENCH_MAX_DELIVERIES times (its task keeps killing its worker).
SCANBENCH_LEASE_S = env.float("SCANBENCH_LEASE_S", default=20.0)
SCANBENCH_LEASE_RENEW_S = env.float("SCANBENCH_LEASE_RENEW_S", default=SCANBENCH_LEASE_S / 4)
SCANBENCH_REQUEUE_AFTER_S = env.int("SCANBENCH_REQUEUE_AFTER_S", default=300)
SCANBENCH_MAX_DELIVERIES = env.int("SCANBENCH_MAX_DELIVERIES", default=3)
SCANBENCH_REAPER_INTERVAL_S = env.float("SCANBENCH_REAPER_INTERVAL_S", default=15.0)
# Bootstrap resamples for intervals computed while scoring live (analytic Wilson and DeLong
# intervals are always computed); 0 keeps the upload-to-leaderboard path short.
SCANBENCH_LIVE_BOOTSTRAP = env.int("SCANBENCH_LIVE_BOOTSTRAP", default=0)
# Resamples for the leaderboard's rank intervals (computed by leaderboard_update).
SCANBENCH_RANK_BOOTSTRAP = env.int("SCANBENCH_RANK_BOOTSTRAP", default=1000)
# Rank ranges and tiers (bootstrap over cases) are computed off the scoring path: once no new
# result arrived for SCANBENCH_RANGES_QUIET_S, or at the latest SCANBENCH_RANGES_MAX_WAIT_S
# after the first result they lack.
SCANBENCH_RANGES_QUIET_S = env.float("SCANBENCH_RANGES_QUIET_S", default=10.0)
SCANBENCH_RANGES_MAX_WAIT_S = env.float("SCANBENCH_RANGES_MAX_WAIT_S", default=120.0)
# Leaderboard history: at most one snapshot per part and interval on a busy board.
SCANBENCH_SNAPSHOT_INTERVAL_S = env.int("SCANBENCH_SNAPSHOT_INTERVAL_S", default=60)
CELERY_BEAT_SCHEDULE["evaluations-reap"] = {
    "task": "challenges.tasks.evaluations_reap",
    "schedule": SCANBENCH_REAPER_INTERVAL_S,
    # A run that no worker picked up in time is dropped: the next one is already on its way.
    "options": {"expires": SCANBENCH_REAPER_INTERVAL_S},
}
SCANBENCH_NOTIFY_BY_EMAIL = env.bool("SCANBENCH_NOTIFY_BY_EMAIL", default=True)
SCANBENCH_SITE_URL = env("SCANBENCH_SITE_URL", default="http://127.0.0.1:8000")

# --- Decoding participants' files (issue 8, docs/security.md) ------------------------------------
# Prediction files are decoded in a locked-down child process (no path to the folders below, no
# network, uid 65534 when the worker is root) under these limits; a file past them is the
# participant's error. Archive members are capped by SCANBENCH_MAX_UNZIPPED_BYTES.
SCANBENCH_DECODE_MEMORY_BYTES = env.int("SCANBENCH_DECODE_MEMORY_BYTES", default=2 * 1024**3)
SCANBENCH_DECODE_CPU_S = env.int("SCANBENCH_DECODE_CPU_S", default=600)
SCANBENCH_DECODE_WALL_S = env.float("SCANBENCH_DECODE_WALL_S", default=900.0)
SCANBENCH_DECODE_HIDDEN = [
    str(SCANBENCH_PRIVATE_ROOT),
    str(MEDIA_ROOT),
    str(VAR_DIR),
    *env.list("SCANBENCH_DECODE_HIDDEN", default=[]),
]
# A classification predictions table (CSV, unpacked) larger than this is refused before parsing.
SCANBENCH_MAX_TABLE_BYTES = env.int("SCANBENCH_MAX_TABLE_BYTES", default=256 * 1024**2)
# Each worker process keeps the decoded masks of the references it scores against, compactly,
# up to this many bytes (evaluator/readers/kept.py; 0 turns it off; docs/production.md).
SCANBENCH_REFERENCE_CACHE_BYTES = env.int("SCANBENCH_REFERENCE_CACHE_BYTES", default=256 * 1024**2)

# --- Accounts (issue 9, docs/security.md "Accounts") ----------------------------------------------
# EMAIL_BACKEND (above) defaults to the console: the embedded default prints verification and
# password-reset mails on the web server's output; production sets an SMTP backend.
# How long the e-mailed confirmation link and the password-reset link work.
SCANBENCH_EMAIL_VERIFY_MAX_AGE_S = env.int("SCANBENCH_EMAIL_VERIFY_MAX_AGE_S", default=3 * 86400)
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=86400)
# The site's registration pages (log-in, sign-up, password reset) before the admin app's
# templates of the same names.
TEMPLATES[0]["DIRS"] = [BASE_DIR / "challenges" / "templates"]

# --- Data downloads (issue 9) --------------------------------------------------------------------
# How /challenges/<slug>/data/<name> sends a public file once the selector allowed it: "django"
# streams it (HTTP Range for resuming); "x-accel" answers with X-Accel-Redirect to
# SCANBENCH_DATA_ACCEL_PREFIX + the file's path under VAR_DIR/data, for an nginx `internal`
# location aliasing that folder (docs/data.md).
SCANBENCH_DATA_SERVING = env("SCANBENCH_DATA_SERVING", default="django")
if SCANBENCH_DATA_SERVING not in ("django", "x-accel"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SCANBENCH_DATA_SERVING must be 'django' or 'x-accel'")
SCANBENCH_DATA_ACCEL_PREFIX = env("SCANBENCH_DATA_ACCEL_PREFIX", default="/protected-data/")

# --- Object storage (issue 14, docs/storage.md) --------------------------------------------------
# SCANBENCH_STORAGE=filesystem (the embedded default: MEDIA_ROOT and SCANBENCH_PRIVATE_ROOT) or s3
# (an S3-compatible object store through django-storages: public data in one bucket, hidden
# labels and submissions' files in another, both private; downloads by presigned URL). Earlier
# releases took a storage class path here; such a value still sets STORAGES["default"] alone.
# Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or boto3's usual chain).
_storage_choice = env("SCANBENCH_STORAGE", default="filesystem")
SCANBENCH_STORAGE = _storage_choice if _storage_choice in ("filesystem", "s3") else "filesystem"
if "." in _storage_choice:
    STORAGES["default"] = {"BACKEND": _storage_choice}
elif _storage_choice not in ("filesystem", "s3"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SCANBENCH_STORAGE must be 'filesystem', 's3' or a class path")
SCANBENCH_S3_ENDPOINT_URL = env("SCANBENCH_S3_ENDPOINT_URL", default="") or None
SCANBENCH_S3_REGION = env("SCANBENCH_S3_REGION", default="") or None
SCANBENCH_S3_PUBLIC_BUCKET = env("SCANBENCH_S3_PUBLIC_BUCKET", default="scanbench-public")
SCANBENCH_S3_PRIVATE_BUCKET = env("SCANBENCH_S3_PRIVATE_BUCKET", default="scanbench-private")
# Path-style addressing (http://host/bucket/key) suits MinIO, SeaweedFS and moto; AWS takes both.
SCANBENCH_S3_ADDRESSING_STYLE = env(
    "SCANBENCH_S3_ADDRESSING_STYLE", default="path" if SCANBENCH_S3_ENDPOINT_URL else "virtual"
)
# How long a presigned download URL works (seconds).
SCANBENCH_S3_URL_EXPIRE_S = env.int("SCANBENCH_S3_URL_EXPIRE_S", default=300)
# Worker-local copies of objects that the evaluator and the sandbox read by path.
SCANBENCH_S3_CACHE_DIR = Path(env("SCANBENCH_S3_CACHE_DIR", default=str(VAR_DIR / "s3-cache")))
# The cache holds hidden labels: the decoding child must not see it (under VAR_DIR by default).
SCANBENCH_DECODE_HIDDEN.append(str(SCANBENCH_S3_CACHE_DIR))
# S3Storage options shared by both buckets (challenges.services.storage adds bucket_name).
SCANBENCH_S3_OPTIONS: dict[str, Any] = {
    "endpoint_url": SCANBENCH_S3_ENDPOINT_URL,
    "region_name": SCANBENCH_S3_REGION,
    "addressing_style": SCANBENCH_S3_ADDRESSING_STYLE,
    "signature_version": "s3v4",
    "default_acl": None,  # no object ACLs: both buckets stay private
    "querystring_auth": True,  # url() gives presigned URLs
    "querystring_expire": SCANBENCH_S3_URL_EXPIRE_S,
    "file_overwrite": False,  # like FileSystemStorage: a taken name gets a suffix
}
if SCANBENCH_STORAGE == "s3":
    # Submissions' files are participants' own: the private bucket, never a public URL.
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**SCANBENCH_S3_OPTIONS, "bucket_name": SCANBENCH_S3_PRIVATE_BUCKET},
    }

"""Pneumo's one settings module: every value comes from the environment.

The defaults give a local demonstration that just works (SQLite under var/,
the embedded Redis started by ``make run``); production differs only by
environment variables. With ``DEBUG=0``, ``SECRET_KEY`` and ``ALLOWED_HOSTS``
set, every production security setting is on.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from cases.dicom.addresses import ae_addresses_parse  # stdlib only: no Django, no pydicom

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str = "") -> str:
    """A variable's value, or the content of the file named by ``NAME_FILE``."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def envbool(name: str, default: bool) -> bool:
    """A boolean; a value outside 1/0, true/false, yes/no, on/off (any case) is refused, never read as false."""
    value = envstr(name, "").strip().lower()
    if value == "":
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of {', '.join(_TRUE + _FALSE)} (any case), not {value!r}")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    value = envstr(name, "").strip()
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be an integer of at least {minimum}, not {number}")
    return number


def envfloat(name: str, default: float) -> float:
    value = envstr(name, "").strip()
    if value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in envstr(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", False)
SECRET_KEY = envstr("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-for-debug-" + "x" * 24
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
SITE_NAME = envstr("SITE_NAME", "Pneumo")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "cases",
    "cases.oidc",
    "inference",
]

MIDDLEWARE = [
    "cases.middleware_limits.RequestSizeLimitMiddleware",  # first: refuses a too-large body before it is read
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "cases.otp.middleware.StaffSecondFactorMiddleware",  # admins: no page without the second factor
    "cases.middleware.IdleLogoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pneumo.urls"
WSGI_APPLICATION = "pneumo.wsgi.application"
AUTH_USER_MODEL = "cases.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

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
                "cases.context_processors.roles",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'pneumo.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write at once: WAL lets readers go on, a
    # busy timeout waits instead of failing, and IMMEDIATE transactions take
    # the write lock up front so two writers never deadlock on an upgrade.
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, Celery --------------------------------------------------------------
REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = envstr("PNEUMO_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Uploads must not wait on a dead or frozen broker: requests publish through
# inference.broker.publishing_connection (every socket step bounded, no retry)
# and the sweeper queues what did not go once Redis answers again. These bound
# the other publishers (the worker's own retries, beat).
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
    # Longer than the hard time limit, so a slow task is never delivered twice.
    "visibility_timeout": envint("PNEUMO_VISIBILITY_TIMEOUT", 3600),
}
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Keep Django's logging (and its patient-data scrubbing filter) in worker processes.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Loading LiteRT takes milliseconds, but a first hash check of a model file
# can take a second or two on a cold disk.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = 30
CELERY_BEAT_SCHEDULE = {
    "sweep-predictions": {
        "task": "inference.tasks.predictions_sweep",
        "schedule": envfloat("PNEUMO_SWEEP_SECONDS", 30.0),
    },
    "expire-idle-claims": {"task": "cases.tasks.claims_expire", "schedule": 60.0},
    # Result objects whose message was lost (broker down, worker killed) go out on the next sweep.
    "sweep-result-outbox": {"task": "cases.tasks.outbox_sweep", "schedule": 30.0},
    # Each site's retention policy (cases.retention), once a day.
    "apply-retention": {"task": "cases.tasks.retention_apply", "schedule": 24 * 3600.0},
    # Yesterday's drift figures per site and model (cases.drift), once a day.
    "check-drift": {"task": "cases.tasks.drift_check", "schedule": 24 * 3600.0},
}
PNEUMO_WORKER_NICE = envint("PNEUMO_WORKER_NICE", 10)
PNEUMO_TASK_MAX_ATTEMPTS = envint("PNEUMO_TASK_MAX_ATTEMPTS", 3)
PNEUMO_TASK_LEASE_SECONDS = envint("PNEUMO_TASK_LEASE_SECONDS", 120)
PNEUMO_TASK_SOFT_TIME_LIMIT = envint("PNEUMO_TASK_SOFT_TIME_LIMIT", 60)
PNEUMO_TASK_TIME_LIMIT = envint("PNEUMO_TASK_TIME_LIMIT", 90)
# Read by scripts/run.py (make run) for its web server and worker.
PORT = envint("PORT", 8000, minimum=1)
PNEUMO_WORKER_CONCURRENCY = envint("PNEUMO_WORKER_CONCURRENCY", 2, minimum=1)
# LiteRT threads per worker process; several single-threaded processes give the best throughput.
PNEUMO_INFERENCE_THREADS = envint("PNEUMO_INFERENCE_THREADS", 1, minimum=1)
# JPEG 2000 decoding threads (0: one per core, at most 4); passed to cases.imaging by its callers.
PNEUMO_DECODE_THREADS = envint("PNEUMO_DECODE_THREADS", 0, minimum=0) or max(1, min(4, os.cpu_count() or 1))

# Throttles, sessions and login lockouts keep working while Redis is down.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "pneumo"},
}

# --- Files ----------------------------------------------------------------------
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(BASE_DIR / "media")))
PNEUMO_MODEL_DIR = Path(envstr("PNEUMO_MODEL_DIR", str(BASE_DIR / "var" / "models")))
# Trained versions shipped in the repository (models/<name>/{manifest.json,weights.npz}); tests point it elsewhere.
PNEUMO_SHIPPED_MODELS_DIR = BASE_DIR / "models"
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    # Uploaded studies live outside any public URL: base_url stays unset and
    # every download goes through a view that checks the user's site.
    "default": {
        "BACKEND": envstr("PNEUMO_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": {"location": str(MEDIA_ROOT)}
        if envstr("PNEUMO_STORAGE_BACKEND", "") in {"", "django.core.files.storage.FileSystemStorage"}
        else {},
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# S3-compatible object storage through django-storages, when PNEUMO_STORAGE_BACKEND names it.
AWS_STORAGE_BUCKET_NAME = envstr("AWS_STORAGE_BUCKET_NAME")
AWS_S3_ENDPOINT_URL = envstr("AWS_S3_ENDPOINT_URL") or None
AWS_S3_REGION_NAME = envstr("AWS_S3_REGION_NAME") or None
AWS_ACCESS_KEY_ID = envstr("AWS_ACCESS_KEY_ID") or None
AWS_SECRET_ACCESS_KEY = envstr("AWS_SECRET_ACCESS_KEY") or None
AWS_DEFAULT_ACL = None  # private objects: downloads go through the app's access checks
AWS_S3_FILE_OVERWRITE = False
PNEUMO_SENDFILE_HEADER = envstr("PNEUMO_SENDFILE_HEADER", "")  # "X-Accel-Redirect" behind nginx
PNEUMO_SENDFILE_PREFIX = envstr("PNEUMO_SENDFILE_PREFIX", "/protected-media/")
PNEUMO_MAX_UPLOAD_BYTES = envint("PNEUMO_MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
PNEUMO_MAX_PIXELS = envint("PNEUMO_MAX_PIXELS", 60_000_000)
# One archive may unpack to at most this much in all, whatever its headers say (zip bombs).
PNEUMO_MAX_INFLATED_BYTES = envint("PNEUMO_MAX_INFLATED_BYTES", 10 * PNEUMO_MAX_UPLOAD_BYTES, minimum=1)
DATA_UPLOAD_MAX_NUMBER_FILES = envint("PNEUMO_MAX_FILES_PER_UPLOAD", 500)
# A whole request body; larger ones are answered 413 from their Content-Length, before being read.
PNEUMO_MAX_REQUEST_BYTES = envint("PNEUMO_MAX_REQUEST_BYTES", 5 * PNEUMO_MAX_UPLOAD_BYTES, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- Authentication -------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "cases.oidc.backends.LocalPasswordBackend",  # Django's password check, under PNEUMO_LOCAL_LOGIN
    "cases.oidc.backends.SsoBackend",  # keeps the sessions that single sign-on opened
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AXES_FAILURE_LIMIT = envint("PNEUMO_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = envint("PNEUMO_LOGIN_COOLOFF_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = envint("PNEUMO_PROXY_COUNT", 0)
PNEUMO_IDLE_LOGOUT_SECONDS = envint("PNEUMO_IDLE_LOGOUT_SECONDS", 15 * 60)
PNEUMO_CLAIM_IDLE_SECONDS = envint("PNEUMO_CLAIM_IDLE_SECONDS", 20 * 60)
PNEUMO_DEMO_PASSWORD = envstr("PNEUMO_DEMO_PASSWORD")
PNEUMO_DEMO_STUDIES = envbool("PNEUMO_DEMO_STUDIES", True)
PNEUMO_METRICS_TOKEN = envstr("PNEUMO_METRICS_TOKEN")

# --- Single sign-on (OpenID Connect) ------------------------------------------------
# Empty issuer: SSO is off. The provider's endpoints come from its discovery document at first use.
PNEUMO_OIDC_ISSUER = envstr("PNEUMO_OIDC_ISSUER").strip().rstrip("/")
PNEUMO_OIDC_CLIENT_ID = envstr("PNEUMO_OIDC_CLIENT_ID")
PNEUMO_OIDC_CLIENT_SECRET = envstr("PNEUMO_OIDC_CLIENT_SECRET")  # best given as PNEUMO_OIDC_CLIENT_SECRET_FILE
PNEUMO_OIDC_SCOPES = envstr("PNEUMO_OIDC_SCOPES", "openid email profile")
PNEUMO_OIDC_PROVIDER_NAME = envstr("PNEUMO_OIDC_PROVIDER_NAME", "single sign-on")
PNEUMO_OIDC_ROLE_CLAIM = envstr("PNEUMO_OIDC_ROLE_CLAIM", "roles")
PNEUMO_OIDC_SITE_CLAIM = envstr("PNEUMO_OIDC_SITE_CLAIM", "sites")
PNEUMO_OIDC_MFA_AMR = envlist("PNEUMO_OIDC_MFA_AMR")
PNEUMO_LOCAL_LOGIN = envstr("PNEUMO_LOCAL_LOGIN", "all").strip().lower()
if PNEUMO_LOCAL_LOGIN not in {"all", "admins"}:
    raise ImproperlyConfigured("PNEUMO_LOCAL_LOGIN must be 'all' or 'admins'")
if PNEUMO_OIDC_ISSUER and not PNEUMO_OIDC_CLIENT_ID:
    raise ImproperlyConfigured("PNEUMO_OIDC_ISSUER is set: PNEUMO_OIDC_CLIENT_ID is needed too")
# The second factor (django-otp): the name authenticator apps show beside the account.
OTP_TOTP_ISSUER = SITE_NAME
# The secret key of de-identified exports (pseudonyms, UIDs, date offsets): a file of at least 32 bytes.
# Empty: one is generated on the first export and kept in PNEUMO_DEID_GENERATED_KEY_FILE.
PNEUMO_DEID_KEY_FILE = envstr("PNEUMO_DEID_KEY_FILE")
PNEUMO_DEID_GENERATED_KEY_FILE = BASE_DIR / "var" / "deid.key"
# The key that encrypts backups (manage.py backup): a file of 32 random bytes in urlsafe base64; empty: plain.
PNEUMO_BACKUP_KEY_FILE = envstr("PNEUMO_BACKUP_KEY_FILE")

# --- DICOM network ---------------------------------------------------------------
# The DICOM listener (manage.py dicom_listener) and where results are sent back.
PNEUMO_DICOM_AE = envstr("PNEUMO_DICOM_AE", "PNEUMO")
PNEUMO_DICOM_PORT = envint("PNEUMO_DICOM_PORT", 11112, minimum=1)
PNEUMO_DICOM_BIND = envstr("PNEUMO_DICOM_BIND", "127.0.0.1")
PNEUMO_DICOM_TLS_CERT_FILE = envstr("PNEUMO_DICOM_TLS_CERT_FILE")
PNEUMO_DICOM_TLS_KEY_FILE = envstr("PNEUMO_DICOM_TLS_KEY_FILE")
# A site code: callers not mapped in the admin send to this site; empty refuses them.
PNEUMO_DICOM_DEFAULT_SITE = envstr("PNEUMO_DICOM_DEFAULT_SITE")
# "AET@host:port,...": C-STORE destinations that receive every result object of every site.
PNEUMO_RESULT_DESTINATIONS = envstr("PNEUMO_RESULT_DESTINATIONS")
try:  # read once here, so that a typo stops start-up rather than the first result sent
    ae_addresses_parse(PNEUMO_RESULT_DESTINATIONS, variable="PNEUMO_RESULT_DESTINATIONS")
except ValueError as _error:
    raise ImproperlyConfigured(str(_error)) from None
PNEUMO_RESULT_RETRY_MAX_SECONDS = envint("PNEUMO_RESULT_RETRY_MAX_SECONDS", 300, minimum=10)
PNEUMO_RESULT_RETRY_HOURS = envint("PNEUMO_RESULT_RETRY_HOURS", 72, minimum=1)
# The operations console warns when a source that sent on each of the 3 days before sends nothing this long.
PNEUMO_SOURCE_SILENCE_HOURS = envint("PNEUMO_SOURCE_SILENCE_HOURS", 24, minimum=1)
# A day counts for the drift alarm on agreement only with this many signed studies (cases.drift).
PNEUMO_DRIFT_MIN_DAILY = envint("PNEUMO_DRIFT_MIN_DAILY", 10, minimum=1)
# The local evidence a site threshold needs; with less, an admin must say why (inference.thresholds).
PNEUMO_SITE_THRESHOLD_MIN_STUDIES = envint("PNEUMO_SITE_THRESHOLD_MIN_STUDIES", 100, minimum=1)
PNEUMO_SITE_THRESHOLD_MIN_POSITIVES = envint("PNEUMO_SITE_THRESHOLD_MIN_POSITIVES", 20, minimum=1)

# --- Security -------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = envint("PNEUMO_SESSION_MAX_SECONDS", 12 * 3600)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
_https = envbool("PNEUMO_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = _https
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_HSTS_SECONDS = envint("PNEUMO_HSTS_SECONDS", 31_536_000 if _https else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _https
SECURE_HSTS_PRELOAD = _https
if envbool("PNEUMO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}

# --- REST API ----------------------------------------------------------------------
PNEUMO_API_TOKEN_HOURS = envint("PNEUMO_API_TOKEN_HOURS", 8)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cases.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["cases.api.throttles.ApiUserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "api": envstr("PNEUMO_API_RATE", "1000/min"),
        "api_upload": envstr("PNEUMO_API_UPLOAD_RATE", "120/min"),
        "api_token": envstr("PNEUMO_API_TOKEN_RATE", "30/min"),
    },
    "NUM_PROXIES": envint("PNEUMO_PROXY_COUNT", 0),  # the same count axes uses
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pneumo API",
    "DESCRIPTION": "Chest X-ray pneumonia decision support. AI results are unconfirmed until a radiologist signs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "StudyStatusEnum": "cases.states.StudyStatus",
        "AiLabelEnum": "inference.models.AiLabel",
        "AiDomainEnum": "inference.models.AiDomain",
    },
}

# Error reports (DEBUG's 500 page, admins' error e-mails) hide connection strings too, not only secrets.
DEFAULT_EXCEPTION_REPORTER_FILTER = "cases.error_reports.ConnectionSafeExceptionReporterFilter"

# --- Logging: no patient data leaves in a log line ---------------------------------------
LOG_LEVEL = envstr("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"scrub_phi": {"()": "cases.log_scrubbing.ScrubPatientDataFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["scrub_phi"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "axes": {"level": "WARNING"},
    },
}

LANGUAGE_CODE = "en-gb"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "pneumo@localhost")

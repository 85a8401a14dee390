"""Mandate settings: one module, configured by environment variables only (see README)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("MANDATE_DATA_DIR", str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)
TESTING = env_bool("MANDATE_TESTING", False)

_DEV_SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = _DEV_SECRET_KEY
elif SECRET_KEY == _DEV_SECRET_KEY and not (DEBUG or TESTING):
    raise ImproperlyConfigured("SECRET_KEY is the development default; set a real secret")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG or TESTING else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    # Bottom to top (docs/architecture.md): each app imports only the ones listed before it.
    "accounts",
    "audit",
    "identities",
    "tasks",
    "posture",
    "console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    # Static files straight from the web process: compressed, hashed names cached for a year.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "console.metrics.RequestLatencyMiddleware",
    "console.middleware.RequestIdMiddleware",
    "console.middleware.UndeclaredMethodMiddleware",
    "console.outage.DatabaseOutageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "console.middleware.SessionLifetimeMiddleware",
    "console.middleware.SsoSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

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
                "console.context_processors.console",
            ],
        },
    }
]

# --- Database -----------------------------------------------------------------------------------
# DATABASE_URL is parsed here and nowhere else. SQLite by default; PostgreSQL via psycopg 3.
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'mandate.sqlite3'}"
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL we understand: {exc}") from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["OPTIONS"] = {
        # WAL and a busy timeout let the web server, worker and beat share one file.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    _db["CONN_MAX_AGE"] = 0
    # A file, not memory, so a real worker and beat started by a test can see the test database.
    _db["TEST"] = {"NAME": str(DATA_DIR / "test-mandate.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with a health check that reads the socket instead of sending SELECT 1 on
    # every request (core/postgresql/base.py): a restarted database is still noticed and left.
    _db["ENGINE"] = "core.postgresql"
    _db["CONN_HEALTH_CHECKS"] = True
    # Django's own (client-side binding) cursors never prepare; this lets the decision hot path
    # prepare its two statements (tasks/decisions.py). Turn off behind a transaction-mode pooler.
    if env_bool("DB_PREPARED_STATEMENTS", True):
        _db.setdefault("OPTIONS", {})["prepare_threshold"] = 5
    if env_bool("DB_POOL", False):
        # psycopg's pool replaces persistent connections: one or the other.
        _db["CONN_MAX_AGE"] = 0
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DB_POOL_MIN", 2, minimum=1),
            "max_size": env_int("DB_POOL_MAX", 10, minimum=1),
        }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production serves what `manage.py collectstatic` wrote: gzip/brotli copies and content-hashed names
# (WhiteNoise caches those for a year). Development and tests serve the source folders as they are.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG or TESTING
WHITENOISE_AUTOREFRESH = DEBUG or TESTING

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- Security -----------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# Console sessions end after this long without a request, and after the absolute lifetime however
# busy (console.middleware.SessionLifetimeMiddleware); the cookie never outlives the lifetime.
MANDATE_SESSION_IDLE_SECONDS = env_int("MANDATE_SESSION_IDLE_SECONDS", 30 * 60, minimum=60)
MANDATE_SESSION_MAX_SECONDS = env_int("MANDATE_SESSION_MAX_SECONDS", 12 * 3600, minimum=60)
SESSION_COOKIE_AGE = MANDATE_SESSION_MAX_SECONDS
# Django's admin site is off unless asked for: nothing in Mandate needs it, and its sign-in form is
# one more door.
MANDATE_ADMIN_ENABLED = env_bool("MANDATE_ADMIN_ENABLED", False)
# The interactive API docs (/api/docs/, /api/redoc/) ask for sign-in unless public; the schema itself
# (/api/schema/) is always fetchable by clients.
MANDATE_API_DOCS_PUBLIC = env_bool("MANDATE_API_DOCS_PUBLIC", DEBUG)
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp): scripts, styles and everything else from our own origin
# only, no inline script or style anywhere (templates keep their CSS and JS in static files; htmx is
# one of them, configured without eval or injected styles in base.html). Redoc's page alone relaxes
# styles, for the reason given in console/api_docs.py.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
    },
}
# Permissions-Policy (django-permissions-policy): the console uses no device or sensor API.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "encrypted-media",
        "fullscreen",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "picture-in-picture",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not TESTING)
    # Probes talk to each process directly over plain HTTP, not through the TLS proxy.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not TESTING)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not TESTING)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if TESTING else 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = not TESTING
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "accounts.authentication.AgentCredentialRefusal",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, refused with a 400 when nested deeper than core.json_input.MAX_DEPTH.
    "DEFAULT_PARSER_CLASSES": ["core.json_input.DepthLimitedJSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "Mandate API",
    "DESCRIPTION": "Identity lifecycle of AI agents: agents, instances, task envelopes, credentials, decisions, audit.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Limits every endpoint enforces alike (empty filters, page sizes, 415, the events aliases).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.openapi.strict_contract"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SECURITY": [{"bearerAuth": []}],
    "ENUM_NAME_OVERRIDES": {
        # Agents and instances share one set of lifecycle states.
        "LifecycleStatusEnum": "identities.models.Agent.Status",
        "ApiTokenStatusEnum": ["active", "expired", "revoked"],
        "StandingExceptionStatusEnum": "posture.models.StandingException.Status",
        # Activity kinds: all of them on the record, three of them reportable.
        "ActivityKindEnum": "tasks.models.ActivityEvent.Kind",
        "ReportedKindEnum": ["tool_call", "secret_access", "privilege_escalation"],
    },
    "APPEND_COMPONENTS": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
    },
}

# --- Mandate ------------------------------------------------------------------------------------
MANDATE_TRUST_DOMAIN = env_str("MANDATE_TRUST_DOMAIN", "mandate.local")
MANDATE_PUBLIC_URL = (env_str("MANDATE_PUBLIC_URL", "") or "").rstrip("/")
# The issuer (iss) of credentials when MANDATE_PUBLIC_URL is unset: where `make run` serves. Fixed
# rather than taken from each request's Host header, which the caller chooses: a discovery document
# and tokens whose issuer followed it would let anyone name their own issuer.
MANDATE_DEVELOPMENT_URL = f"http://127.0.0.1:{env_int('PORT', 8000, minimum=1)}"
MANDATE_DEFAULT_AUDIENCE = env_str("MANDATE_DEFAULT_AUDIENCE", "mandate")
MANDATE_DEFAULT_MAX_ENVELOPE_SECONDS = env_int("MANDATE_DEFAULT_MAX_ENVELOPE_SECONDS", 8 * 3600, minimum=60)
MANDATE_CREDENTIAL_DEFAULT_TTL = env_int("MANDATE_CREDENTIAL_DEFAULT_TTL", 300, minimum=1)
MANDATE_CREDENTIAL_MAX_TTL = env_int("MANDATE_CREDENTIAL_MAX_TTL", 900, minimum=1)
# Reported activity older than this many days is refused (a late batch is a gateway's backlog; a 1970
# date is a bug or a forgery, and would land outside every window people look at).
MANDATE_EVENT_MAX_AGE_DAYS = env_int("MANDATE_EVENT_MAX_AGE_DAYS", 7, minimum=1)
# Outbound fetches (core/outbound.py: a trusted issuer's discovery document and keys): https to
# public addresses only; these host:port entries may be reached whatever their address (loopback
# ones over http too). One deadline bounds each whole fetch.
MANDATE_OUTBOUND_ALLOW = env_list("MANDATE_OUTBOUND_ALLOW", [])
MANDATE_OUTBOUND_DEADLINE_SECONDS = 5
MANDATE_POLICY_DIR = env_str("MANDATE_POLICY_DIR", str(BASE_DIR / "policy"))

# --- Limits (README "Rate limits and lockout") -----------------------------------------------------
# Client addresses (lockout, rate limits, metrics) are read through core.client_address, which
# believes X-Forwarded-For only from MANDATE_TRUSTED_PROXIES (set with the metrics below).
# Requests per minute at the OAuth endpoints (0 turns a limit off): per client address before the
# caller is verified, then per verified client (the instance at /oauth/token, the API token's user at
# /oauth/introspect).
MANDATE_RATE_TOKEN_PER_ADDRESS = env_int("MANDATE_RATE_TOKEN_PER_ADDRESS", 600, minimum=0)
MANDATE_RATE_TOKEN_PER_CLIENT = env_int("MANDATE_RATE_TOKEN_PER_CLIENT", 120, minimum=0)
MANDATE_RATE_INTROSPECT_PER_ADDRESS = env_int("MANDATE_RATE_INTROSPECT_PER_ADDRESS", 3000, minimum=0)
MANDATE_RATE_INTROSPECT_PER_CLIENT = env_int("MANDATE_RATE_INTROSPECT_PER_CLIENT", 1200, minimum=0)
# Background evidence exports one person may have queued or running at once.
MANDATE_MAX_CONCURRENT_EXPORTS = env_int("MANDATE_MAX_CONCURRENT_EXPORTS", 2, minimum=1)
# Sign-in lockout (django-axes): after this many wrong passwords for one account from one address,
# that account is locked for that address (only) for the cool-off time; an admin can unlock sooner.
MANDATE_LOGIN_FAILURE_LIMIT = env_int("MANDATE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
MANDATE_LOGIN_LOCKOUT_MINUTES = env_int("MANDATE_LOGIN_LOCKOUT_MINUTES", 15, minimum=1)

# --- Sign-in lockout (django-axes, keyed on account AND address: nobody can lock an admin out
# from elsewhere) -----------------------------------------------------------------------------------
AXES_ENABLED = True
AXES_HANDLER = "accounts.lockout.AuditedAxesHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = MANDATE_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=MANDATE_LOGIN_LOCKOUT_MINUTES)
AXES_RESET_ON_SUCCESS = True
# Attempts refused while locked neither extend the lockout nor add audit rows (console/lockout.py).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "core.client_address.client_address"
AXES_WHITELIST_CALLABLE = "accounts.lockout.never_locked"  # sign-ins without a username (SSO callbacks)
AXES_LOCKOUT_TEMPLATE = "console/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are not this app's record to keep
# axes keeps a failed attempt's form (the password always masked); mask the rest that is not evidence.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

# Keys (Fernet, comma separated, newest first) that encrypt signing keys at rest. In development a key
# is generated once into the data folder; with DEBUG off a missing value refuses to start.
_kek = env_list("MANDATE_KEY_ENCRYPTION_KEYS", [])
if not _kek:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured("MANDATE_KEY_ENCRYPTION_KEYS must be set when DEBUG is off")
    _kek_file = DATA_DIR / "dev-key-encryption-key"
    if not _kek_file.exists():
        from cryptography.fernet import Fernet

        _kek_file.write_text(Fernet.generate_key().decode())
        _kek_file.chmod(0o600)
    _kek = [_kek_file.read_text().strip()]
MANDATE_KEY_ENCRYPTION_KEYS = _kek

# The audit trail's HMAC key ring (audit/keys.py): secrets of at least 32 characters,
# separated by commas or new lines, newest first (MANDATE_AUDIT_KEY_FILE names a file holding them).
# Generated once into the data folder in development; with DEBUG off a missing value refuses to
# start. Never stored in the database.
_audit_keys = env_str("MANDATE_AUDIT_KEY") or ""
if not _audit_keys.strip():
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured("MANDATE_AUDIT_KEY (or MANDATE_AUDIT_KEY_FILE) must be set when DEBUG is off")
    _audit_dev_file = DATA_DIR / "dev-audit-key"
    if not _audit_dev_file.exists():
        import secrets as _secrets

        _audit_dev_file.write_text(_secrets.token_urlsafe(48))
        _audit_dev_file.chmod(0o600)
    _audit_keys = _audit_dev_file.read_text()
MANDATE_AUDIT_KEYS = [part.strip() for part in _audit_keys.replace("\n", ",").split(",") if part.strip()]
if any(len(k) < 32 for k in MANDATE_AUDIT_KEYS):
    raise ImproperlyConfigured("each audit key in MANDATE_AUDIT_KEY must be at least 32 characters")
# Every checkpoint is appended here after it commits: put it where the database cannot reach (another
# disk, a file with chattr +a, a host that ships it to remote storage). Empty turns the file sink off,
# which /readyz and the console then show.
MANDATE_AUDIT_CHECKPOINT_FILE = env_str(
    "MANDATE_AUDIT_CHECKPOINT_FILE", str(DATA_DIR / "audit-checkpoints.jsonl") if (DEBUG or TESTING) else ""
)

# --- Email --------------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "mandate@localhost")

# --- Celery -------------------------------------------------------------------------------------
_broker_dir = DATA_DIR / "broker"
# The embedded broker ignores the host, but kombu warns "No hostname was supplied" without one.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://localhost/"
if CELERY_BROKER_URL in ("filesystem://", "filesystem://localhost/"):
    CELERY_BROKER_URL = "filesystem://localhost/"
    for sub in ("in", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "in"),
        "data_folder_out": str(_broker_dir / "in"),
        "processed_folder": str(_broker_dir / "processed"),
        # Broadcast (pidbox) state; kombu's default is ./control in whatever the cwd is.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
# --- Cache: the store every process shares (rate limits, login lockout bookkeeping) ---------------
# Redis when MANDATE_CACHE_URL names one, or else when the Celery broker is Redis; otherwise the
# database cache (its table is made by a migration). Never per-process memory: a limit counted per
# process lets every worker through the limit once more. The test suite alone uses local memory
# unless MANDATE_CACHE_URL is set: each test process is isolated and starts every test empty.
MANDATE_CACHE_URL = env_str("MANDATE_CACHE_URL") or ""
_cache_url = MANDATE_CACHE_URL or (CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "")
if _cache_url and not _cache_url.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("MANDATE_CACHE_URL must be a redis:// or rediss:// URL (or unset for the database)")
if _cache_url and (MANDATE_CACHE_URL or not TESTING):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "mandate",
        }
    }
elif TESTING:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mandate-tests"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "mandate_cache"}}

CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", TESTING)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# What a task prints (the console mail backend in development) is information, not a warning.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# Sweeps go to their own queue so a burst of notifications never delays expiry (and the other
# way round); a worker started with `-Q celery,scheduled` serves both.
MANDATE_SCHEDULED_QUEUE = env_str("MANDATE_SCHEDULED_QUEUE", "scheduled")
MANDATE_SWEEP_TASKS = (
    "tasks.tasks.expire_overdue_credentials",
    "tasks.tasks.expire_overdue_envelopes",
    "tasks.tasks.expire_pending_requests",
    "tasks.tasks.flag_stale_sessions",
    "tasks.tasks.rotate_signing_keys",
    "tasks.tasks.activate_published_keys",
    "tasks.tasks.retire_drained_keys",
    "tasks.tasks.expire_due_exceptions",
    "tasks.tasks.remind_recertifications",
    "tasks.tasks.flag_orphaned_agents",
    "audit.jobs.write_audit_checkpoint",
    "tasks.tasks.relay_outbox",
    "identities.jobs.refresh_issuer_keys",
    "console.jobs.sweep_rate_counts",
)
CELERY_TASK_ROUTES = {name: {"queue": MANDATE_SCHEDULED_QUEUE} for name in MANDATE_SWEEP_TASKS}
# A sweep that runs longer than this is stopped between chunks (its current chunk rolls back).
MANDATE_SWEEP_SOFT_TIME_LIMIT = env_int("MANDATE_SWEEP_SOFT_TIME_LIMIT", 240, minimum=1)


def _sweep(task: str, *, every: int, offset: int) -> dict:
    """One beat entry: wall-clock slots shifted by ``offset`` so the sweeps do not fire together;
    a run that waited in the queue longer than most of its interval is dropped (the next one
    comes soon and does the same work)."""
    from console.schedules import staggered

    return {
        "task": task,
        "schedule": staggered(every, offset),
        "options": {
            "queue": MANDATE_SCHEDULED_QUEUE,
            "expires": max(every * 0.8, 0.5),
            "soft_time_limit": MANDATE_SWEEP_SOFT_TIME_LIMIT,
            "time_limit": MANDATE_SWEEP_SOFT_TIME_LIMIT + 30,
        },
    }


# Every scheduled job, in one place. Intervals in seconds, each overridable by its env var.
CELERY_BEAT_SCHEDULE = {
    "expire-overdue-credentials": _sweep(
        "tasks.tasks.expire_overdue_credentials",
        every=env_int("MANDATE_SWEEP_CREDENTIALS_SECONDS", 60, minimum=1),
        offset=0,
    ),
    "expire-overdue-envelopes": _sweep(
        "tasks.tasks.expire_overdue_envelopes",
        every=env_int("MANDATE_SWEEP_ENVELOPES_SECONDS", 60, minimum=1),
        offset=17,
    ),
    "expire-pending-requests": _sweep(
        "tasks.tasks.expire_pending_requests",
        every=env_int("MANDATE_SWEEP_PENDING_SECONDS", 300, minimum=1),
        offset=131,
    ),
    "flag-stale-sessions": _sweep(
        "tasks.tasks.flag_stale_sessions", every=env_int("MANDATE_SWEEP_STALE_SECONDS", 120, minimum=1), offset=43
    ),
    "rotate-signing-keys": _sweep(
        "tasks.tasks.rotate_signing_keys",
        every=env_int("MANDATE_ROTATE_KEYS_SECONDS", 24 * 3600, minimum=60),
        offset=3 * 3600 + 17 * 60,
    ),
    "activate-published-keys": _sweep(
        "tasks.tasks.activate_published_keys",
        every=env_int("MANDATE_ACTIVATE_KEYS_SECONDS", 300, minimum=60),
        offset=4 * 60 + 31,
    ),
    "retire-drained-keys": _sweep(
        "tasks.tasks.retire_drained_keys",
        every=env_int("MANDATE_RETIRE_KEYS_SECONDS", 3600, minimum=60),
        offset=23 * 60 + 7,
    ),
    "expire-standing-exceptions": _sweep(
        "tasks.tasks.expire_due_exceptions",
        every=env_int("MANDATE_SWEEP_EXCEPTIONS_SECONDS", 300, minimum=1),
        offset=2 * 60 + 13,
    ),
    # Reminders are claimed per exception per day, so a second run the same day mails nobody twice.
    "remind-recertifications": _sweep(
        "tasks.tasks.remind_recertifications",
        every=env_int("MANDATE_REMIND_RECERTIFICATIONS_SECONDS", 24 * 3600, minimum=60),
        offset=8 * 3600 + 7 * 60,
    ),
    # Notices the broker could not take when they were written (tasks/outbox.py).
    "relay-outbox": _sweep(
        "tasks.tasks.relay_outbox", every=env_int("MANDATE_RELAY_OUTBOX_SECONDS", 30, minimum=1), offset=11
    ),
    "flag-orphaned-agents": _sweep(
        "tasks.tasks.flag_orphaned_agents",
        every=env_int("MANDATE_SWEEP_ORPHANS_SECONDS", 900, minimum=1),
        offset=7 * 60 + 41,
    ),
    # Signs where every audit chain stands and appends it to MANDATE_AUDIT_CHECKPOINT_FILE; a run
    # when no chain moved writes nothing (audit/checkpoints.py).
    "write-audit-checkpoint": _sweep(
        "audit.jobs.write_audit_checkpoint",
        every=env_int("MANDATE_AUDIT_CHECKPOINT_SECONDS", 300, minimum=1),
        offset=59,
    ),
    # Rate-limit counts of ended windows whose keys never came back (core/ratelimit.py; the
    # database's counter only: Redis keys expire by themselves).
    "sweep-rate-counts": _sweep(
        "console.jobs.sweep_rate_counts",
        every=env_int("MANDATE_SWEEP_RATE_COUNTS_SECONDS", 600, minimum=60),
        offset=5 * 60 + 29,
    ),
    # Trusted workload issuers' keys, fetched through core.outbound (identities/oidc.py).
    "refresh-issuer-keys": _sweep(
        "identities.jobs.refresh_issuer_keys",
        every=env_int("MANDATE_ISSUER_KEYS_REFRESH_SECONDS", 600, minimum=60),
        offset=3 * 60 + 23,
    ),
}

# --- Metrics (console/metrics.py) -----------------------------------------------------------------
# /metrics answers an auditor's or identity admin's API token, or any client whose address (after the
# trusted proxies below) is in this list of addresses or networks. Never anyone else.
MANDATE_METRICS_ALLOWED_IPS = env_list("MANDATE_METRICS_ALLOWED_IPS", [])
# Proxies whose X-Forwarded-For is believed (addresses or networks): the client is the right-most
# address in that header that is not one of them. Empty: the client is the connection's peer.
MANDATE_TRUSTED_PROXIES = env_list("MANDATE_TRUSTED_PROXIES", [])
for _name in ("MANDATE_METRICS_ALLOWED_IPS", "MANDATE_TRUSTED_PROXIES"):
    for _entry in globals()[_name]:
        try:
            ipaddress.ip_network(_entry, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{_name}: {_entry!r} is not an address or network (10.0.0.0/8)") from None

# --- Logging ------------------------------------------------------------------------------------
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "console.logs.RequestIdFilter"},
        "client_errors": {"()": "console.logs.ClientErrorsWithoutTraceback"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "console.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "client_errors"],
        },
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own default gives "django" a console handler of its own (under DEBUG) on top of
        # the root's: every django.request warning came out twice. One handler, the root's.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # axes logs every sign-in at INFO; its warnings (failures, lockouts) are kept, with the
        # username and address masked (AXES_SENSITIVE_PARAMETERS); the audit trail has the detail.
        "axes": {"level": "WARNING"},
    },
}


# --- Single sign-on for people (OpenID Connect; off by default, see console/sso.py) ----------------
MANDATE_OIDC_ENABLED = env_bool("MANDATE_OIDC_ENABLED", False)
if MANDATE_OIDC_ENABLED:
    MANDATE_OIDC_ISSUER = env_str("MANDATE_OIDC_ISSUER") or ""
    OIDC_RP_CLIENT_ID = env_str("MANDATE_OIDC_CLIENT_ID") or ""
    OIDC_RP_CLIENT_SECRET = env_str("MANDATE_OIDC_CLIENT_SECRET") or ""  # or MANDATE_OIDC_CLIENT_SECRET_FILE
    if not (MANDATE_OIDC_ISSUER and OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET):
        raise ImproperlyConfigured("MANDATE_OIDC_ENABLED needs MANDATE_OIDC_ISSUER, _CLIENT_ID and _CLIENT_SECRET")
    MANDATE_OIDC_DISCOVERY_URL = env_str(
        "MANDATE_OIDC_DISCOVERY_URL", MANDATE_OIDC_ISSUER.rstrip("/") + "/.well-known/openid-configuration"
    )
    OIDC_RP_SCOPES = env_str("MANDATE_OIDC_SCOPES", "openid email profile groups")
    OIDC_RP_SIGN_ALGO = env_str("MANDATE_OIDC_SIGN_ALGO", "RS256")
    if OIDC_RP_SIGN_ALGO not in ("RS256", "ES256", "PS256"):
        raise ImproperlyConfigured("MANDATE_OIDC_SIGN_ALGO must be RS256, ES256 or PS256")
    MANDATE_OIDC_ROLE_CLAIM = env_str("MANDATE_OIDC_ROLE_CLAIM", "groups")
    # "identity-admin=idp-admins,agent-owner=idp-owners": a provider group per role (repeat a role for more).
    MANDATE_OIDC_ROLE_MAP: dict[str, set[str]] = {}
    for _pair in env_list("MANDATE_OIDC_ROLE_MAP", []):
        _role, _sep, _group = (part.strip() for part in _pair.partition("="))
        if not _sep or not _group or _role not in ("identity-admin", "agent-owner", "auditor", "gateway"):
            raise ImproperlyConfigured(f"MANDATE_OIDC_ROLE_MAP: {_pair!r} is not role=group with a Mandate role")
        MANDATE_OIDC_ROLE_MAP.setdefault(_role, set()).add(_group)
    MANDATE_OIDC_ALLOWED_GROUPS = env_list("MANDATE_OIDC_ALLOWED_GROUPS", [])
    MANDATE_OIDC_BUTTON_LABEL = env_str("MANDATE_OIDC_BUTTON_LABEL", "Sign in with SSO")
    OIDC_USE_PKCE = True
    OIDC_USE_NONCE = True
    OIDC_TIMEOUT = env_int("MANDATE_OIDC_TIMEOUT", 10, minimum=1)
    OIDC_VERIFY_SSL = True
    OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"
    AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "accounts.auth_backends.PasswordBackend",
        "console.sso.MandateOIDCBackend",
    ]
    TEMPLATES[0]["OPTIONS"]["context_processors"].append("console.sso.context")
    # An SSO session is re-checked with the provider this often (refresh token); without a refresh
    # token it ends then. The same cadence re-validates people with API tokens (scheduled job).
    MANDATE_OIDC_REVALIDATE_SECONDS = env_int("MANDATE_OIDC_REVALIDATE_SECONDS", 900, minimum=60)
    CELERY_BEAT_SCHEDULE["revalidate-sso-accounts"] = _sweep(
        "console.tasks.revalidate_sso_accounts",
        every=env_int("MANDATE_SWEEP_SSO_SECONDS", 300, minimum=60),
        offset=2 * 60 + 47,
    )
    CELERY_TASK_ROUTES["console.tasks.revalidate_sso_accounts"] = {"queue": MANDATE_SCHEDULED_QUEUE}
    # SSO-only: the password form signs in only these break-glass accounts (comma-separated names).
    MANDATE_OIDC_ONLY = env_bool("MANDATE_OIDC_ONLY", False)
    MANDATE_BREAK_GLASS_USERS = env_list("MANDATE_BREAK_GLASS_USERS", [])
else:
    MANDATE_OIDC_ONLY = False
    MANDATE_BREAK_GLASS_USERS = []

# --- Step-up for sensitive actions (approving high-risk envelopes, changing someone's roles) -------
# 0 (the default) turns it off; otherwise the person must have signed in (or re-entered their
# password, or re-authenticated at the provider) within this many seconds.
MANDATE_STEP_UP_MAX_AGE = env_int("MANDATE_STEP_UP_MAX_AGE", 0, minimum=0)
# With SSO, the authentication context class the provider must report for a step-up ("" = any).
MANDATE_STEP_UP_ACR = env_str("MANDATE_STEP_UP_ACR", "") or ""

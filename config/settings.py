"""Settings: every knob is read from the environment here, with a safe default for a first run.

With no environment at all the service runs on SQLite in ``var/`` with a broker that needs no
server. Production sets ``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` (Redis),
``SECRET_KEY`` and ``ALLOWED_HOSTS``.
"""

import contextlib
import ipaddress
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


VAR_DIR = Path(env("PIDNS_VAR_DIR", str(BASE_DIR / "var")))
# What the service keeps there (the database with API tokens and TLS keys, the secret key, the
# broker's messages) is readable by its user only.
with contextlib.suppress(OSError):
    VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    VAR_DIR.chmod(0o700)


def _secret_key() -> str:
    """SECRET_KEY from the environment; otherwise a key generated once and kept in var/."""
    key = env("SECRET_KEY")
    if key:
        return key
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


SECRET_KEY = _secret_key()
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "django_htmx",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "core",
    "gates",
    "nodes",
    "rollout",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.middleware.NoStoreMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# The embedded default serves web processes, a worker and beat at once: readers never wait for
# the writer (WAL), and a writer takes the lock when its transaction begins, so two writers queue
# (busy timeout) instead of failing half-way. The same for a SQLite file named by DATABASE_URL.
SQLITE_OPTIONS = {
    "timeout": 30,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if env("DATABASE_URL"):
    DATABASES = {
        "default": dj_database_url.parse(
            env("DATABASE_URL"), conn_max_age=envint("DB_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"]["OPTIONS"] = dict(SQLITE_OPTIONS)
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": dict(SQLITE_OPTIONS),
            # A file, not memory, so that test subprocesses (simfleet, workers) share it.
            "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
        }
    }
    # It holds API tokens and TLS keys: the service's user only (SQLite gives its journal files the
    # same mode).
    with contextlib.suppress(OSError):
        _db = VAR_DIR / "db.sqlite3"
        os.close(os.open(_db, os.O_CREAT | os.O_WRONLY, 0o600))
        _db.chmod(0o600)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Only tests set this (a fast hasher for the users they create); production keeps Django's default.
if env("PIDNS_PASSWORD_HASHERS"):
    PASSWORD_HASHERS = envlist("PIDNS_PASSWORD_HASHERS", "")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "static")))
# A read-only deployment collects static files elsewhere.
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve app static files (API docs assets) straight from the apps: no collectstatic step needed.
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# Served over TLS (directly or behind a proxy): secure cookies, redirect plain HTTP, HSTS.
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_TLS_PROXY", False) else None
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
# The health check is asked over plain HTTP by load balancers and probes.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)

# Content Security Policy (django-csp): scripts and styles from this server only; no inline script
# (htmx and the dashboard's script are files). Style attributes are allowed (progress bars, and
# the API docs' Swagger UI sets them).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Large imports go through the API as one JSON body.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 64 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.throttles.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["core.throttles.TokenRateThrottle", "core.throttles.AddressRateThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["core.roles.IsViewer"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "PID namespace rollout manager API",
    "DESCRIPTION": (
        "Inventory of clusters and nodes, PID-namespace decisions under the proposal and upstream "
        "plans, and fleet summaries. Authenticate with `Authorization: Token <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "PidNamespaceEnum": "nodes.models.PidNamespace",
        "ObservedPidNamespaceEnum": "nodes.models.ObservedPidNamespace",
        "ContainerRuntimeEnum": "nodes.models.ContainerRuntime",
        "PlanEnum": "nodes.models.Plan",
        "DecisionPlanEnum": "gates.policy.PLANS",
        "DecisionIntentEnum": "gates.policy.INTENTS",
        "RolloutIntentEnum": "rollout.models.ROLLOUT_INTENTS",
        "RolloutKindEnum": "rollout.models.ROLLOUT_KINDS",
        "RolloutStatusEnum": "rollout.models.RolloutStatus",
        "AuditStatusEnum": "nodes.models.AuditStatus",
        "OperationStateEnum": "rollout.models.OperationState",
        "MechanismEnum": "nodes.models.Mechanism",
        "RollbackMethodEnum": "nodes.models.RollbackMethod",
        "ObservedViaEnum": "nodes.models.ObservedVia",
    },
}

# Celery: Redis in production and CI; a broker that needs no server for the embedded default.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    with contextlib.suppress(OSError):
        (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
        (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
    # The filesystem transport has no fan-out, so workers take no remote-control commands.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Below the broker's visibility timeout. Operation steps are short; audits enforce their own limit
# (PIDNS_AUDIT_TIME_LIMIT) and get theirs on top of it.
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 360)
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# One place for every periodic schedule (run one beat process).
CELERY_BEAT_SCHEDULE = {
    "audit-fleet": {"task": "nodes.tasks.audit_scheduled", "schedule": float(envint("PIDNS_AUDIT_INTERVAL", 900))},
    "reconcile": {"task": "nodes.tasks.reconcile", "schedule": float(envint("PIDNS_RECONCILE_INTERVAL", 30))},
    "prune": {"task": "nodes.tasks.prune", "schedule": 3600.0},
    "webhooks-reconcile": {"task": "core.tasks.webhooks_reconcile", "schedule": 30.0},
    "clusters-sync": {
        "task": "nodes.tasks.clusters_sync_scheduled",
        "schedule": float(envint("PIDNS_CLUSTER_SYNC_INTERVAL", 300)),
    },
    "rollouts-reconcile": {
        "task": "rollout.tasks.rollouts_reconcile",
        "schedule": float(env("PIDNS_ROLLOUT_RECONCILE_INTERVAL", "3")),
    },
}

# Talking to nodes.
PIDNS_DRIVER_TIMEOUT = float(env("PIDNS_DRIVER_TIMEOUT", "10"))
PIDNS_KUBELET_DIR = env("PIDNS_KUBELET_DIR", "/etc/kubernetes/pidns")
PIDNS_KUBELET_CONFIG = env("PIDNS_KUBELET_CONFIG", "/var/lib/kubelet/config.yaml")
PIDNS_AUDIT_CONCURRENCY = envint("PIDNS_AUDIT_CONCURRENCY", 20)
# Large audits read their nodes from several processes (each with its threads), so reading is not
# bound by one interpreter lock; smaller ones, and audits run by a prefork pool's child, use threads.
PIDNS_AUDIT_PROCESSES = envint("PIDNS_AUDIT_PROCESSES", min(4, os.cpu_count() or 1))
PIDNS_AUDIT_PROCESS_MIN_NODES = envint("PIDNS_AUDIT_PROCESS_MIN_NODES", 1000)
PIDNS_AUDIT_LEASE_SECONDS = envint("PIDNS_AUDIT_LEASE_SECONDS", 300)
PIDNS_AUDIT_STALE_SECONDS = envint("PIDNS_AUDIT_STALE_SECONDS", 120)
# An audit enforces its own time limit (whatever the worker pool); past it, it resumes later, and
# after this many tries it ends timed-out.
PIDNS_AUDIT_TIME_LIMIT = float(env("PIDNS_AUDIT_TIME_LIMIT", "1200"))
PIDNS_AUDIT_MAX_ATTEMPTS = envint("PIDNS_AUDIT_MAX_ATTEMPTS", 3)
PIDNS_VERIFY_TIMEOUT = float(env("PIDNS_VERIFY_TIMEOUT", "120"))
PIDNS_VERIFY_POLL = float(env("PIDNS_VERIFY_POLL", "0.5"))
PIDNS_OPERATION_MAX_ATTEMPTS = envint("PIDNS_OPERATION_MAX_ATTEMPTS", 3)
# A drain whose evictions a disruption budget refuses tries again, at most this many seconds apart
# (kubectl drain waits 5 s).
PIDNS_DRAIN_RETRY_MAX = float(env("PIDNS_DRAIN_RETRY_MAX", "5"))
# Container restarts on a canary node since its change beyond which the canary is not healthy.
PIDNS_CANARY_MAX_RESTARTS = envint("PIDNS_CANARY_MAX_RESTARTS", 0)
# Seconds before a failed webhook delivery is tried again, doubling with each try (six tries).
PIDNS_WEBHOOK_BACKOFF = float(env("PIDNS_WEBHOOK_BACKOFF", "10"))
# Where the dashboard is reached (https://pidns.example.com), for links in notifications.
PIDNS_BASE_URL = env("PIDNS_BASE_URL", "")
# A worker holds an operation only while it runs one step, and renews the lease every third of it
# while the step runs (rollout.leases): a dead worker's steps are taken over a lease later.
PIDNS_OPERATION_LEASE_SECONDS = envint("PIDNS_OPERATION_LEASE_SECONDS", 15)
# A step due this long with no worker on it lost its message: the reconciler sends it again.
PIDNS_DISPATCH_STALE_SECONDS = envint("PIDNS_DISPATCH_STALE_SECONDS", 5)
PIDNS_DEFAULT_SECONDS_PER_NODE = float(env("PIDNS_DEFAULT_SECONDS_PER_NODE", "30"))
# Retention in days (0 keeps everything): per-node audit history, and the audit log.
PIDNS_OBSERVATION_RETENTION_DAYS = envint("PIDNS_OBSERVATION_RETENTION_DAYS", 14)
PIDNS_EVENT_RETENTION_DAYS = envint("PIDNS_EVENT_RETENTION_DAYS", 0)
# Shared cache: Redis when CACHE_URL is set (use it with several web processes), else per process.
CACHE_URL = env("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# API throttling (429 with Retry-After): requests per token, per address without a token, and bad
# tokens per address per minute (0: no limit). Counted in the cache (CACHE_URL shares it).
PIDNS_API_RATES = {
    "user": env("PIDNS_API_RATE_TOKEN", "1200/minute"),
    "anon": env("PIDNS_API_RATE_ADDRESS", "120/minute"),
}
PIDNS_API_BAD_TOKENS = envint("PIDNS_API_BAD_TOKENS", 30)
# Sign-in: attempts allowed per user name and address before a lockout (0: no limit), and its length.
PIDNS_LOGIN_MAX_FAILURES = envint("PIDNS_LOGIN_MAX_FAILURES", 5)
PIDNS_LOGIN_LOCKOUT_SECONDS = envint("PIDNS_LOGIN_LOCKOUT_SECONDS", 900)
# The overview's fleet aggregation is shared by every open page for this long (0: not cached).
PIDNS_OVERVIEW_CACHE_SECONDS = envint("PIDNS_OVERVIEW_CACHE_SECONDS", 3)
# How often an open overview page refreshes (each refresh runs its aggregation queries).
PIDNS_OVERVIEW_REFRESH_SECONDS = envint("PIDNS_OVERVIEW_REFRESH_SECONDS", 5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Prometheus metrics at /metrics (core.metrics): scraped with a bearer token, or from allowed
# addresses; off (403) when neither is set.
PIDNS_METRICS_TOKEN = env("PIDNS_METRICS_TOKEN")
try:
    PIDNS_METRICS_ALLOW_NETWORKS = [
        ipaddress.ip_network(item, strict=False) for item in envlist("PIDNS_METRICS_ALLOW_IPS", "")
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"PIDNS_METRICS_ALLOW_IPS: {exc}") from None
PIDNS_METRICS_COLLECTORS = [
    "nodes.metrics.InventoryCollector",
    "rollout.metrics.RolloutCollector",
    "core.metrics.BrokerCollector",
]
PIDNS_METRICS_QUEUES = envlist("PIDNS_METRICS_QUEUES", "celery")

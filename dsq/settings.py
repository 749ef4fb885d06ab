"""Django settings, read from the environment; bad values fail loudly at start.

Secrets (HF_TOKEN, SECRET_KEY) are read here and never written to the database or logs.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def database_from_url(url: str) -> dict:
    """DATABASE_URL → Django DATABASES entry: sqlite:///path or postgres://user:pw@host:port/name."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if path.startswith("//"):  # sqlite:////abs/path
            path = path[1:]
        elif path.startswith("/"):  # sqlite:///rel/path
            path = path[1:]
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / path) if path else ":memory:",
                "OPTIONS": {"timeout": 30}}
    if parsed.scheme in ("postgres", "postgresql"):
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        host = unquote(parsed.hostname or "") or options.pop("host", "")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": host,
            "PORT": str(parsed.port or ""),
            "OPTIONS": options,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ValueError(f"DATABASE_URL must start with sqlite:// or postgres://, got {url!r}")


DEBUG = env_bool("DSQ_DEBUG", False)
SECRET_KEY = os.environ.get("DSQ_SECRET_KEY") or ("dev-only-insecure-key" if DEBUG else "")
if not SECRET_KEY:
    SECRET_KEY = "dsq-local-" + (BASE_DIR / "manage.py").as_posix()  # stable per checkout; set DSQ_SECRET_KEY in production
ALLOWED_HOSTS = [h for h in os.environ.get("DSQ_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DSQ_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

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
    "drf_spectacular",
    "registry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # admin and dashboard static files under gunicorn
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dsq.urls"
WSGI_APPLICATION = "dsq.wsgi.application"
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
            ]
        },
    }
]

DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", "sqlite:///var/dsq.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DSQ_MAX_REQUEST_BYTES", 1 << 20)

# Where finished artifacts and job work directories live.
DSQ_STORAGE_ROOT = Path(os.environ.get("DSQ_STORAGE_ROOT", BASE_DIR / "var" / "storage")).resolve()
# Hugging Face Hub: endpoint and token come from the environment only.
HF_ENDPOINT = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
HF_TOKEN = os.environ.get("HF_TOKEN", "")
DSQ_HUB_NAMESPACE = os.environ.get("DSQ_HUB_NAMESPACE", "dsq")
# Approving a release sends it to the Hub; set to 0 to publish only through the explicit publish action.
DSQ_PUBLISH_ON_APPROVAL = env_bool("DSQ_PUBLISH_ON_APPROVAL", True)
# Job leases: a worker that stops heartbeating for this long loses its claim.
DSQ_LEASE_SECONDS = env_int("DSQ_LEASE_SECONDS", 300)
DSQ_HEARTBEAT_SECONDS = env_int("DSQ_HEARTBEAT_SECONDS", 30)
DSQ_MAX_ATTEMPTS = env_int("DSQ_MAX_ATTEMPTS", 3)
# Tier-1 evaluation defaults (a job's options override them): context, windows (0 = the whole text), GPU layers.
DSQ_EVAL_N_CTX = env_int("DSQ_EVAL_N_CTX", 512)
DSQ_EVAL_MAX_WINDOWS = env_int("DSQ_EVAL_MAX_WINDOWS", 32) or None
DSQ_EVAL_GPU_LAYERS = env_int("DSQ_EVAL_GPU_LAYERS", 0)

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Longer than the longest job: a 671B quantization can run for a day.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("DSQ_VISIBILITY_TIMEOUT", 48 * 3600)}
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "registry.api.errors.json_exception_handler",
}
SPECTACULAR_SETTINGS = {"TITLE": "dsq registry API", "VERSION": "0.1.0",
                        "DESCRIPTION": "Checkpoints, recipes, quantization jobs, variants and releases."}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DSQ_LOG_LEVEL", "INFO")},
}

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


def _env_number(name: str, default, parse, what: str):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError:
        raise ValueError(f"{name} must be {what}, got {value!r}") from None


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def env_rate(name: str, default: str) -> "str | None":
    """A DRF throttle rate such as `120/minute`; `off` (or empty) turns that limit off."""
    value = os.environ.get(name, default).strip()
    if value.lower() in ("", "off", "none", "0"):
        return None
    count, _, period = value.partition("/")
    if not count.isdigit() or period not in ("second", "minute", "hour", "day", "s", "m", "h", "d"):
        raise ValueError(f"{name} must look like 120/minute (second, minute, hour or day) or off, got {value!r}")
    return value


def env_paths(name: str, default: "list[Path]") -> "list[Path]":
    """A colon-separated list of absolute directories, resolved (symlinks followed) once at start."""
    value = os.environ.get(name)
    if value is None:
        return [p.resolve() for p in default]
    paths = [Path(p) for p in value.split(os.pathsep) if p]
    relative = [str(p) for p in paths if not p.is_absolute()]
    if relative:
        raise ValueError(f"{name} must list absolute directories, got relative {relative}")
    return [p.resolve() for p in paths]


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
    "registry.api.middleware.RequestGuard",  # before anything reads the body or the URL
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
# No endpoint takes file uploads: a multipart body with a file part is refused (400), never spooled to disk.
DATA_UPLOAD_MAX_NUMBER_FILES = 0

# Where finished artifacts and job work directories live.
DSQ_STORAGE_ROOT = Path(os.environ.get("DSQ_STORAGE_ROOT", BASE_DIR / "var" / "storage")).resolve()
# Hugging Face Hub: endpoint and token come from the environment only.
# Where checkpoints (local_path) and importance matrices may be read from when registered through the
# API: a path that resolves outside every one of these is refused (400). Colon-separated, absolute.
DSQ_IMPORT_ROOTS = env_paths("DSQ_IMPORT_ROOTS", [DSQ_STORAGE_ROOT, BASE_DIR / "var"])
HF_ENDPOINT = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
# The Hub address pull manifests send clients to (unset: HF_ENDPOINT). Set it empty when HF_ENDPOINT is an
# internal address: clients then download published files from the registry's /api/files/ instead.
DSQ_HUB_PUBLIC_URL = os.environ.get("DSQ_HUB_PUBLIC_URL")
HF_TOKEN = os.environ.get("HF_TOKEN", "")
DSQ_HUB_NAMESPACE = os.environ.get("DSQ_HUB_NAMESPACE", "dsq")
# `quantized_by` in the Hub model card's metadata.
DSQ_QUANTIZED_BY = os.environ.get("DSQ_QUANTIZED_BY", "dsq")
# Transient Hub errors (5xx, 429, connection resets) are retried this many times in all, waiting
# DSQ_PUBLISH_BACKOFF_SECONDS, then twice as long each time (at most a minute).
DSQ_PUBLISH_ATTEMPTS = env_int("DSQ_PUBLISH_ATTEMPTS", 5)
DSQ_PUBLISH_BACKOFF_SECONDS = env_float("DSQ_PUBLISH_BACKOFF_SECONDS", 2.0)
# Approving a release sends it to the Hub; set to 0 to publish only through the explicit publish action.
DSQ_PUBLISH_ON_APPROVAL = env_bool("DSQ_PUBLISH_ON_APPROVAL", True)
# Caps per user: open (candidate) releases one user may have waiting for review, and the length in
# characters of free text (release notes, decision reasons). Over a cap the request is a 400 naming it.
DSQ_MAX_OPEN_CANDIDATES = env_int("DSQ_MAX_OPEN_CANDIDATES", 20)
DSQ_MAX_TEXT_CHARS = env_int("DSQ_MAX_TEXT_CHARS", 10_000)
# Job leases: a worker that stops heartbeating for this long loses its claim.
DSQ_LEASE_SECONDS = env_int("DSQ_LEASE_SECONDS", 300)
DSQ_HEARTBEAT_SECONDS = env_int("DSQ_HEARTBEAT_SECONDS", 30)
# Attempts a new job gets before it fails for good (registry.models.Job.max_attempts).
DSQ_MAX_ATTEMPTS = env_int("DSQ_MAX_ATTEMPTS", 3)
# The reaper (Celery beat, every DSQ_REAP_SECONDS) re-queues jobs whose lease expired and re-sends the
# message of a queued job still unclaimed DSQ_REQUEUE_SECONDS after it was sent (lost with the broker).
DSQ_REAP_SECONDS = env_int("DSQ_REAP_SECONDS", 60)
DSQ_REQUEUE_SECONDS = env_int("DSQ_REQUEUE_SECONDS", 600)
# The torch device a worker quantizes on (cpu, cuda, cuda:1); DSQ_DEVICE in a worker's environment.
DSQ_DEVICE = os.environ.get("DSQ_DEVICE") or "cpu"
# A job that does not fit this host (disk, GPU memory) is sent again this many seconds later, for another host.
DSQ_UNFIT_RETRY_SECONDS = env_int("DSQ_UNFIT_RETRY_SECONDS", 60)
# Split a variant's GGUF into files of at most this many bytes (as gguf-split does); 0 = one file. Each
# file is one shard job that any worker takes (registry.shards), so this is also how finely a job
# spreads over GPUs and hosts. 40 GiB: under the Hub's 50 GB per file; R1's DQ3_K_M is 8 files.
DSQ_SHARD_BYTES = env_int("DSQ_SHARD_BYTES", 40 << 30) or None
# How long a worker that finished computing waits for an unreachable database before giving up the job.
DSQ_DB_WAIT_SECONDS = env_int("DSQ_DB_WAIT_SECONDS", 120)
# Tier-1 evaluation defaults (a job's options override them): context, windows (0 = the whole text), GPU layers.
DSQ_EVAL_N_CTX = env_int("DSQ_EVAL_N_CTX", 512)
DSQ_EVAL_MAX_WINDOWS = env_int("DSQ_EVAL_MAX_WINDOWS", 32) or None
DSQ_EVAL_GPU_LAYERS = env_int("DSQ_EVAL_GPU_LAYERS", 0)
# llama.cpp's llama-server for task suites (scripts/build-llama-tools.sh; the GPU image puts it on PATH).
# Empty: `llama-server` on PATH, else llama-cpp-python's server (workers/benchmark.py engine_for).
DSQ_LLAMA_SERVER = os.environ.get("DSQ_LLAMA_SERVER", "")
# llama.cpp's llama-imatrix for imatrix jobs (workers/imatrix.py); empty: `llama-imatrix` on PATH.
DSQ_LLAMA_IMATRIX = os.environ.get("DSQ_LLAMA_IMATRIX", "")
# Host-level scheduling (registry/placement.py): a benchmark whose variant does not fit one GPU of
# DSQ_GPU_BYTES (default: an 80 GB H100 as the driver reports it) goes to the `host` queue, taken by
# workers with DSQ_WORKER_SCOPE=host that own every GPU of their machine; `gpu` workers own one GPU.
DSQ_GPU_BYTES = env_int("DSQ_GPU_BYTES", 81559 * 2**20)
DSQ_WORKER_SCOPE = os.environ.get("DSQ_WORKER_SCOPE") or "gpu"
if DSQ_WORKER_SCOPE not in ("gpu", "host"):
    raise ValueError(f"DSQ_WORKER_SCOPE must be gpu or host, got {DSQ_WORKER_SCOPE!r}")
# The machine's name in GPU leases and host records (one-GPU and host workers of a machine must agree):
# default the hostname. Containers of one machine get different hostnames: set it to the machine's.
DSQ_HOST_NAME = os.environ.get("DSQ_HOST_NAME", "")
# Advertise GPUs without CUDA ("NxSIZE", e.g. 8x80GB, as /api/fit's custom hardware): for tests and for
# dry-running a fleet's routing on CPU machines. Jobs then run on the CPU with the GPUs' settings.
DSQ_FAKE_GPUS = os.environ.get("DSQ_FAKE_GPUS", "")

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
    # JSON only, whatever the Accept header (no browsable HTML API): registry/api/negotiation.py.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "registry.api.negotiation.JSONContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "registry.api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "registry.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "registry.api.errors.json_exception_handler",
    "DEFAULT_PARSER_CLASSES": ["registry.api.parsers.JSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    # Per client (IP for anonymous, user for token holders); quantization requests have their own, stricter
    # scope. The defaults leave room for `dsq demo` polling and the test suite; 429 carries Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["registry.api.throttles.AnonRateThrottle",
                                 "registry.api.throttles.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_rate("DSQ_THROTTLE_ANON", "600/minute"),
        "user": env_rate("DSQ_THROTTLE_USER", "3000/minute"),
        "quantize": env_rate("DSQ_THROTTLE_QUANTIZE", "60/minute"),
    },
}
# The most rows one list page may hold (?limit=); more is a 400.
DSQ_MAX_PAGE_SIZE = env_int("DSQ_MAX_PAGE_SIZE", 1000)
if DSQ_MAX_PAGE_SIZE < 1:
    raise ValueError(f"DSQ_MAX_PAGE_SIZE must be at least 1, got {DSQ_MAX_PAGE_SIZE}")
# Throttle counters live in this cache, shared by every gunicorn worker (a cache per process would
# let N workers allow N× each rate): Redis with DSQ_CACHE_URL=redis://… (docker-compose.yml), else
# the database itself (table dsq_cache, created by every `migrate`: registry/apps.py).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["DSQ_CACHE_URL"]}
          if os.environ.get("DSQ_CACHE_URL") else
          {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "dsq_cache",
           "OPTIONS": {"MAX_ENTRIES": 100_000}}}  # culling early would forget clients' counts
# The schema is a contract (registry/api/schema.py): request bodies list only what a client may send.
SPECTACULAR_SETTINGS = {"TITLE": "dsq registry API", "VERSION": "0.1.0",
                        "DESCRIPTION": "Checkpoints, recipes, quantization jobs, variants and releases.",
                        "COMPONENT_SPLIT_REQUEST": True, "SERVE_INCLUDE_SCHEMA": False,
                        "ENUM_NAME_OVERRIDES": {"JobStateEnum": "registry.models.JobState",
                                                "ReleaseStateEnum": "registry.models.Release.State"},
                        "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                                                 "registry.api.schema.query_text_without_nul"]}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DSQ_LOG_LEVEL", "INFO")},
}

# --- Operating: health, metrics, fleet page, structured logs (README "Operating dsq") ---
# Time every request under its route pattern for /metrics (outermost, so refused requests count too).
MIDDLEWARE.insert(0, "registry.metrics.RequestLatency")
# The fleet page and dsq_jobs_stuck flag a running job with no heartbeat for this many minutes.
DSQ_STUCK_MINUTES = env_int("DSQ_STUCK_MINUTES", 10)
# DSQ_LOG_FORMAT=json (the compose default) writes JSON lines with job id, worker and host; text otherwise.
DSQ_LOG_FORMAT = os.environ.get("DSQ_LOG_FORMAT", "text")
if DSQ_LOG_FORMAT not in ("text", "json"):
    raise ValueError(f"DSQ_LOG_FORMAT must be text or json, got {DSQ_LOG_FORMAT!r}")
if DSQ_LOG_FORMAT == "json":
    LOGGING["formatters"] = {"json": {"()": "dsq.logging.JSONFormatter"}}
    LOGGING["handlers"]["console"]["formatter"] = "json"
# Celery workers keep this LOGGING instead of replacing the root logger's handlers with their own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

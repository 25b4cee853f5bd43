"""Settings for the test suite.

DATA_EXCHANGE_TEST_DB=postgres (default) or sqlite picks the database. The end-to-end fixtures
pass the same environment to the celery worker they start, so both use one database.
"""

import os
from pathlib import Path
from typing import Any

import django
from django.db.backends.signals import connection_created

from tests.settings_blocks import celery_settings, s3_settings

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "data_exchange_tool",
    "workflows",
    "tests.testapp",
]
if os.environ.get("DATA_EXCHANGE_TEST_ONLY_THE_APP"):
    # A project that lists data_exchange_tool alone, as the first releases' README showed.
    INSTALLED_APPS.remove("workflows")
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
STATIC_URL = "/static/"

DB = os.environ.get("DATA_EXCHANGE_TEST_DB", "postgres")
if DB == "sqlite":
    # one database per test session by default, so concurrent sessions never share one
    SQLITE_PATH = os.environ.get(
        "DATA_EXCHANGE_TEST_SQLITE", str(BASE_DIR / f".test-{os.getpid()}.sqlite3")
    )
    # One file shared with the worker process: WAL lets readers run beside the writer, "timeout"
    # (SQLite's busy timeout, seconds) makes a writer wait for the lock instead of failing, and
    # IMMEDIATE transactions take the write lock at BEGIN, so two writers never deadlock.
    SQLITE_OPTIONS: dict[str, Any] = {"timeout": 30}
    if django.VERSION >= (5, 1):
        SQLITE_OPTIONS |= {
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    else:  # Django 4.2: no init_command / transaction_mode options for SQLite

        def _sqlite_wal(sender: Any, connection: Any, **kwargs: Any) -> None:
            if connection.vendor == "sqlite":
                connection.connection.execute("PRAGMA journal_mode=WAL")

        connection_created.connect(_sqlite_wal)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            "OPTIONS": SQLITE_OPTIONS,
            "TEST": {"NAME": SQLITE_PATH},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "NAME": os.environ.get("DATA_EXCHANGE_TEST_PG_NAME", "test"),
            "TEST": {
                "NAME": os.environ.get(
                    "DATA_EXCHANGE_TEST_PG_TEST_NAME", f"test_data_exchange_{os.getpid()}"
                )
            },
        }
    }

MEDIA_ROOT = os.environ.get("DATA_EXCHANGE_TEST_MEDIA", str(BASE_DIR / ".media"))

# Celery: unit tests run eager; the end-to-end fixtures start a real worker and switch
# CELERY_TASK_ALWAYS_EAGER off through the environment.
REDIS_URL = os.environ.get("DATA_EXCHANGE_TEST_REDIS", "redis://127.0.0.1:6379/11")
globals().update(
    celery_settings(
        os.environ.get("DATA_EXCHANGE_TEST_BROKER", REDIS_URL),
        REDIS_URL,
        eager=os.environ.get("DATA_EXCHANGE_TEST_EAGER", "1") == "1",
    )
)
if os.environ.get("DATA_EXCHANGE_TEST_VISIBILITY_TIMEOUT"):
    # Fault tests: unacknowledged messages come back after this many seconds, swept every second.
    _VISIBILITY = {"visibility_timeout": int(os.environ["DATA_EXCHANGE_TEST_VISIBILITY_TIMEOUT"])}
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **_VISIBILITY,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = _VISIBILITY

DATA_EXCHANGE_REDIS_URL = os.environ.get("DATA_EXCHANGE_TEST_LOCK_REDIS", REDIS_URL)
DATA_EXCHANGE_CHUNK_SIZE = int(os.environ.get("DATA_EXCHANGE_TEST_CHUNK_SIZE", "100"))
if os.environ.get("DATA_EXCHANGE_TEST_MAX_CHUNK_ATTEMPTS"):  # crash-cap fault tests
    DATA_EXCHANGE_MAX_CHUNK_ATTEMPTS = int(os.environ["DATA_EXCHANGE_TEST_MAX_CHUNK_ATTEMPTS"])

# Queues of the two phases (unset: the library's default shared queue).
if os.environ.get("DATA_EXCHANGE_TEST_PREVIEW_QUEUE"):
    DATA_EXCHANGE_PREVIEW_QUEUE = os.environ["DATA_EXCHANGE_TEST_PREVIEW_QUEUE"]
if os.environ.get("DATA_EXCHANGE_TEST_IMPORT_QUEUE"):
    DATA_EXCHANGE_IMPORT_QUEUE = os.environ["DATA_EXCHANGE_TEST_IMPORT_QUEUE"]

# Fault-injection hooks (tests/fault_hooks.py); the worker also imports the module at start, so
# its task_prerun receiver records every task start.
DATA_EXCHANGE_FAULT_HOOKS = os.environ.get("DATA_EXCHANGE_TEST_FAULT_HOOKS") or None
if DATA_EXCHANGE_FAULT_HOOKS:
    CELERY_IMPORTS = [DATA_EXCHANGE_FAULT_HOOKS.rsplit(".", 1)[0]]

globals().update(
    s3_settings(
        os.environ.get("DATA_EXCHANGE_TEST_S3_ENDPOINT"),
        os.environ.get("DATA_EXCHANGE_TEST_S3_BUCKET", "imports"),
    )
)

"""Django settings of the benchmark project (``DJANGO_SETTINGS_MODULE=loadtests.settings``).

The apps and the StockRecord model of the test suite, on a PostgreSQL database of its own
(``dxt_bench``, created by the runner if missing), Redis db 12 for Celery and the import lock, and
the S3 endpoint the runner starts (``DXT_BENCH_S3_ENDPOINT``; unset: local files under
``loadtests/.data/media``). Every value can be changed through the environment.
"""

import os
from pathlib import Path

from tests.settings import INSTALLED_APPS, MIDDLEWARE, TEMPLATES
from tests.settings_blocks import celery_settings, s3_settings

__all__ = ["INSTALLED_APPS", "MIDDLEWARE", "TEMPLATES"]

DATA_DIR = Path(__file__).resolve().parent / ".data"
SECRET_KEY = "loadtests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "NAME": os.environ.get("DXT_BENCH_DB", "dxt_bench"),
        "CONN_MAX_AGE": int(os.environ.get("DXT_BENCH_CONN_MAX_AGE", "0")),
    }
}

MEDIA_ROOT = os.environ.get("DXT_BENCH_MEDIA", str(DATA_DIR / "media"))

REDIS_URL = os.environ.get("DXT_BENCH_REDIS", "redis://127.0.0.1:6379/12")
globals().update(celery_settings(REDIS_URL))
CELERY_RESULT_EXPIRES = 3600

DATA_EXCHANGE_REDIS_URL = REDIS_URL
DATA_EXCHANGE_CHUNK_SIZE = int(os.environ.get("DXT_BENCH_CHUNK_SIZE", "10000"))

globals().update(
    s3_settings(
        os.environ.get("DXT_BENCH_S3_ENDPOINT"), os.environ.get("DXT_BENCH_S3_BUCKET", "bench")
    )
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DXT_BENCH_LOG_LEVEL", "WARNING")},
}

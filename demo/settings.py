"""Settings of the demo project: SQLite, local files, Celery in-process. No services needed."""

from pathlib import Path

from tests.settings_blocks import celery_settings

BASE_DIR = Path(__file__).resolve().parent
STATE_DIR = BASE_DIR / ".demo"
STATE_DIR.mkdir(exist_ok=True)

SECRET_KEY = "demo-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "demo.urls"
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
    "tests.testapp",  # the stock models, importers and serializers of the test suite
    "demo.inventory",  # the demo's admin of those models
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
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
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": STATE_DIR / "db.sqlite3",
        "OPTIONS": {"timeout": 30},
    }
}
MEDIA_ROOT = STATE_DIR / "media"

# The embedded default: tasks run in-process as they are sent (no broker, no Redis). In
# production, point CELERY_BROKER_URL / CELERY_RESULT_BACKEND at Redis and run workers.
globals().update(celery_settings("memory://", "cache+memory://", eager=True))

DATA_EXCHANGE_CHUNK_SIZE = 1000

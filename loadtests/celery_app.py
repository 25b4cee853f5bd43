"""The Celery app of the benchmark project (``celery -A loadtests.celery_app worker``)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loadtests.settings")

app = Celery("loadtests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

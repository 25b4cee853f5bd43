"""Settings blocks shared by the test, benchmark and demo projects: Celery and S3 storage.

Each settings module adds a block to its own names::

    globals().update(celery_settings(REDIS_URL))
    globals().update(s3_settings(os.environ.get("DATA_EXCHANGE_TEST_S3_ENDPOINT"), "imports"))

Nothing here imports Django: settings modules load it before Django is set up.
"""

from __future__ import annotations

from typing import Any

VISIBILITY_TIMEOUT = 3600  # seconds before an unacknowledged message is delivered again


def celery_settings(
    broker_url: str, result_backend: str | None = None, *, eager: bool = False
) -> dict[str, Any]:
    """Celery as the library expects it: late acks, one message at a time, a result backend.

    ``eager``: tasks run in the sending process (no broker, no worker), errors propagate.
    """
    return {
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": result_backend or broker_url,
        "CELERY_TASK_ALWAYS_EAGER": eager,
        "CELERY_TASK_EAGER_PROPAGATES": True,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
        "CELERY_BROKER_TRANSPORT_OPTIONS": {"visibility_timeout": VISIBILITY_TIMEOUT},
    }


def s3_settings(endpoint: str | None, bucket: str) -> dict[str, Any]:
    """The import storage on the S3 endpoint ``endpoint`` (django-storages); unset: no block,
    so the files stay in local storage."""
    if not endpoint:
        return {}
    return {
        "MODEL_DATA_EXCHANGE_S3_BUCKET_NAME": bucket,
        "MODEL_DATA_EXCHANGE_S3_BASE_PATH": "imports",
        "AWS_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_S3_REGION_NAME": "us-east-1",
    }

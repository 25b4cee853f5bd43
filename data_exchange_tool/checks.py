"""System checks, registered in ``AppConfig.ready()``.

Ids are stable: ``data_exchange_tool.E001``… for errors, ``data_exchange_tool.W001``… for
warnings.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning

from . import registry
from .conf import SETTINGS, app_settings
from .exceptions import ImproperlyConfiguredImporter

INT_SETTINGS = (
    "CHUNK_SIZE",
    "LOCK_TIMEOUT",
    "CHUNK_TIME_LIMIT",
    "MAX_ERRORS_PER_CHUNK",
    "PREVIEW_SAMPLE_ROWS",
    "ERRORS_PER_PAGE",
    "MAX_CHUNK_ATTEMPTS",
    "STALE_AFTER",
    "GIVE_UP_AFTER",
    "PICKUP_WARNING_AFTER",
    "MAX_FILE_BYTES",
    "MAX_ROWS",
    "MAX_FIELD_BYTES",
    "XLSX_MAX_UNCOMPRESSED_BYTES",
    "XLSX_MAX_COMPRESSION_RATIO",
    "XLSX_MAX_SHARED_STRINGS_BYTES",
)


@register(Tags.models)
def check_importers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every importer's target model and serializer resolve, and its keys exist."""
    messages: list[CheckMessage] = []
    for label, options in registry.all_importers().items():
        try:
            model = options.target_model
            serializer = options.serializer_class
        except ImproperlyConfiguredImporter as exc:
            messages.append(Error(str(exc), obj=label, id="data_exchange_tool.E001"))
            continue
        names = {f.name for f in model._meta.get_fields()}
        missing = [f for f in options.unique_fields if f not in names]
        if missing:
            messages.append(
                Error(
                    f"{label}: Meta.unique_fields {missing} are not fields of "
                    f"{model._meta.label}.",
                    obj=label,
                    id="data_exchange_tool.E002",
                )
            )
        serializer_model = getattr(getattr(serializer, "Meta", None), "model", None)
        if serializer_model is not None and serializer_model is not model:
            messages.append(
                CheckWarning(
                    f"{label}: the serializer's Meta.model is {serializer_model._meta.label}, "
                    f"but Meta.target_model is {model._meta.label}.",
                    obj=label,
                    id="data_exchange_tool.W001",
                )
            )
    return messages


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Numeric settings are positive; the lock outlives a chunk; Celery keeps results."""
    messages: list[CheckMessage] = []
    for name in INT_SETTINGS:
        value = getattr(app_settings, name)
        if not isinstance(value, int | float) or value <= 0:
            messages.append(
                Error(
                    f"{SETTINGS[name].name} must be a positive number, got {value!r}.",
                    id="data_exchange_tool.E003",
                )
            )
    if messages:
        return messages
    if app_settings.REDIS_URL and app_settings.LOCK_TIMEOUT <= app_settings.CHUNK_TIME_LIMIT:
        messages.append(
            CheckWarning(
                "DATA_EXCHANGE_LOCK_TIMEOUT is not longer than DATA_EXCHANGE_CHUNK_TIME_LIMIT: "
                "the import lock can expire while a chunk is still being written.",
                hint="Make the lock timeout at least twice the chunk time limit.",
                id="data_exchange_tool.W002",
            )
        )
    messages.extend(_check_celery())
    return messages


def _check_celery() -> list[CheckMessage]:
    from celery import current_app

    conf = current_app.conf
    if conf.task_always_eager:
        return []
    backend = conf.result_backend
    if not backend or str(backend).startswith("disabled"):
        return [
            Error(
                "Celery has no result backend; the import chord needs one.",
                hint="Set CELERY_RESULT_BACKEND, e.g. to your Redis URL.",
                id="data_exchange_tool.E004",
            )
        ]
    if not conf.task_acks_late or (conf.worker_prefetch_multiplier or 4) > 1:
        return [
            CheckWarning(
                "Celery is not set to task_acks_late=True with worker_prefetch_multiplier=1; "
                "long chunk tasks may be held by a busy worker or delivered twice.",
                id="data_exchange_tool.W003",
            )
        ]
    return []

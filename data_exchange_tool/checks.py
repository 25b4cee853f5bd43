"""System checks, registered in ``AppConfig.ready()``.

Ids are stable: ``data_exchange_tool.E001``… for errors, ``data_exchange_tool.W001``… for
warnings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning

from . import registry, taskspec
from .conf import SETTINGS, app_settings, media_root
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
                    f"{label}: Meta.unique_fields {missing} are not fields of {model._meta.label}.",
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


@register(Tags.models)
def check_write_databases(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Each importer's rows are written on the database of the import ledger (so a chunk's rows
    and its done mark commit in one transaction)."""
    from .writers import write_database_problem

    messages: list[CheckMessage] = []
    for label, options in registry.all_importers().items():
        try:
            problem = write_database_problem(options.target_model)
        except ImproperlyConfiguredImporter:
            continue  # reported by check_importers
        if problem:
            messages.append(
                Error(
                    f"{label}: {problem}",
                    hint="Make DATABASE_ROUTERS send writes of the target model and of "
                    "data_exchange_tool's models to one database.",
                    obj=label,
                    id="data_exchange_tool.E010",
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
    messages.extend(_check_retention())
    if messages:
        return messages
    messages.extend(_check_private_files())
    if app_settings.REDIS_URL and app_settings.LOCK_TIMEOUT <= app_settings.CHUNK_TIME_LIMIT:
        messages.append(
            CheckWarning(
                "DATA_EXCHANGE_LOCK_TIMEOUT is not longer than DATA_EXCHANGE_CHUNK_TIME_LIMIT: "
                "the import lock can expire while a chunk is still being written.",
                hint="Make the lock timeout at least twice the chunk time limit.",
                id="data_exchange_tool.W002",
            )
        )
    messages.extend(_check_reconcile_times())
    messages.extend(_check_celery())
    return messages


def _check_reconcile_times() -> list[CheckMessage]:
    """Reconcile waits longer than a chunk may run, and gives up later than it re-sends."""
    s = app_settings
    stale_after, give_up_after = s.STALE_AFTER, s.GIVE_UP_AFTER
    hard_limit = s.CHUNK_TIME_LIMIT + taskspec.HARD_LIMIT_EXTRA
    messages: list[CheckMessage] = []
    if stale_after <= hard_limit:
        messages.append(
            CheckWarning(
                f"DATA_EXCHANGE_STALE_AFTER ({s.STALE_AFTER}) is not longer than a chunk's hard "
                f"time limit (DATA_EXCHANGE_CHUNK_TIME_LIMIT {s.CHUNK_TIME_LIMIT} + "
                f"{taskspec.HARD_LIMIT_EXTRA} s): reconcile re-sends chunks that are still "
                "running.",
                hint="Make DATA_EXCHANGE_STALE_AFTER longer than the chunk time limit.",
                id="data_exchange_tool.W004",
            )
        )
    if give_up_after <= stale_after:
        messages.append(
            CheckWarning(
                f"DATA_EXCHANGE_GIVE_UP_AFTER ({s.GIVE_UP_AFTER}) is not longer than "
                f"DATA_EXCHANGE_STALE_AFTER ({s.STALE_AFTER}): reconcile fails a job before it "
                "has re-sent its lost work.",
                hint="Make DATA_EXCHANGE_GIVE_UP_AFTER a few times DATA_EXCHANGE_STALE_AFTER.",
                id="data_exchange_tool.W005",
            )
        )
    return messages


def _check_retention() -> list[CheckMessage]:
    keep = app_settings.KEEP_FILES_FOR
    if keep is None or (isinstance(keep, int | float) and keep > 0):
        return []
    return [
        Error(
            f"DATA_EXCHANGE_KEEP_FILES_FOR must be a positive number of seconds or None "
            f"(keep forever), got {keep!r}.",
            id="data_exchange_tool.E003",
        )
    ]


def _check_private_files() -> list[CheckMessage]:
    """The private folder of import files is not inside MEDIA_ROOT, which may be served."""
    from .storage import private_location, storage_alias_defined

    if app_settings.S3_BUCKET_NAME or storage_alias_defined() or not media_root():
        return []
    location = private_location()
    media = Path(media_root()).resolve()
    if location != media and media not in location.parents:
        return []
    return [
        CheckWarning(
            f"The private folder of import files, {location}, is inside MEDIA_ROOT ({media}): "
            "uploaded files may be served to anyone who guesses their path.",
            hint="Set DATA_EXCHANGE_FILES_DIR to a folder outside MEDIA_ROOT.",
            id="data_exchange_tool.W006",
        )
    ]


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

"""The named Celery tasks. Each is thin: ids in, one call into the app's services.

Tasks are late-acked and requeued if their worker process dies; every service they call is
idempotent, so a task that runs twice (even at the same time) changes nothing more. A chunk
task never fails on a fault: it retries, then records the fault on the chunk, and the reducer
(or the reconcile step, if the reducer never runs) turns the ledger into the job's final state.

The preview has no chord: the split sends each chunk's validation as soon as the chunk is
stored, and whichever of the split and the chunks settles the preview last sends
``finalize_preview``. The import is a chord reduced by ``finalize_import``; the chunk that
settles the import's ledger last sends it too, so an import whose chord is gone still ends.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.db import connections

from data_exchange_tool import services, taskspec
from data_exchange_tool.exceptions import StaleFence
from data_exchange_tool.services import importing, preview, reconcile

from . import canvas

logger = logging.getLogger(__name__)

TASK_OPTIONS: dict[str, Any] = {"bind": True, **taskspec.TASK_OPTIONS}


def _drop_broken_connections() -> None:
    """After a database error, close connections that no longer work, so a retry reconnects."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block and not conn.is_usable():
            conn.close()


def _retry_if_passing(task: Any, exc: Exception) -> None:
    """Retry the task (raises) if the fault may pass (:func:`taskspec.retry_countdown`)."""
    _drop_broken_connections()
    countdown = taskspec.retry_countdown(exc, task.request.retries)
    if countdown is not None:
        raise task.retry(exc=exc, countdown=countdown)


def _retry_or_record(task: Any, chunk_id: int, exc: Exception) -> None:
    """Retry the task (raises) if the fault may pass; otherwise record it on the chunk."""
    _retry_if_passing(task, exc)
    logger.exception("Chunk %s failed", chunk_id)
    services.record_chunk_fault(chunk_id, f"{type(exc).__name__}: {exc}")


@shared_task(name=taskspec.RUN_PREVIEW, **TASK_OPTIONS)
def run_preview(self: Any, job_id: str) -> None:
    """Split the source; the split sends each chunk's validation as soon as it is stored."""
    try:
        preview.split_source(job_id)
    except Exception as exc:
        _retry_if_passing(self, exc)
        logger.exception("The preview of job %s could not split its file", job_id)
        preview.fail_split_by_fault(job_id, exc)


@shared_task(name=taskspec.VALIDATE_CHUNK, **TASK_OPTIONS)
def validate_chunk(self: Any, job_id: str, chunk_id: int) -> None:
    """Validate one chunk; the last chunk to settle sends finalize_preview."""
    try:
        preview.validate_chunk(job_id, chunk_id)
    except Exception as exc:
        _retry_or_record(self, chunk_id, exc)
        preview.send_finalize_if_settled(job_id)  # the fault settled the chunk for good


@shared_task(name=taskspec.FINALIZE_PREVIEW, **TASK_OPTIONS)
def finalize_preview(self: Any, job_id: str) -> None:
    """Reduce the preview; a copy sent by another chunk finds it done and does nothing."""
    preview.finalize_preview(job_id)


@shared_task(name=taskspec.RUN_IMPORT, **TASK_OPTIONS)
def run_import(self: Any, job_id: str) -> None:
    """Write every pending chunk in a chord reduced by finalize_import."""
    fence, chunk_ids = importing.pending_chunks(job_id)
    if chunk_ids:
        canvas.import_chord(job_id, fence, chunk_ids).apply_async()
    else:
        importing.finalize_import(job_id, fence)


@shared_task(name=taskspec.IMPORT_CHUNK, **TASK_OPTIONS)
def import_chunk(self: Any, job_id: str, chunk_id: int, fence: int) -> str:
    try:
        return importing.import_chunk(job_id, chunk_id, fence)
    except StaleFence:
        return "stale"
    except Exception as exc:
        _retry_or_record(self, chunk_id, exc)
        importing.send_finalize_if_settled(job_id, fence)  # the fault settled the chunk
        return "fault"


@shared_task(name=taskspec.FINALIZE_IMPORT, **TASK_OPTIONS)
def finalize_import(self: Any, _results: Any, job_id: str, fence: int | None = None) -> None:
    """Reduce the import attempt ``fence``; a reducer of an earlier attempt does nothing."""
    importing.finalize_import(job_id, fence)


@shared_task(name=taskspec.RECONCILE, bind=True, **taskspec.RECONCILE_OPTIONS)
def reconcile_jobs(self: Any) -> dict[str, int]:
    """Finish, re-send or fail jobs that stopped making progress (see services.reconcile)."""
    return reconcile.reconcile()

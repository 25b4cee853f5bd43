"""Reconcile: finish, re-send or fail jobs that stopped making progress.

The database is the source of truth. A job in CREATED or IMPORT_IN_PROGRESS whose last progress
(a chunk stored or marked, a state moved) is older than ``stale_after`` seconds had a task lost
(a worker killed, Redis emptied, a dispatch that never left), or the import chord's bookkeeping.
For such a job this step:

* finalises it if every chunk is done (the reducer was never sent or never ran);
* otherwise sends its missing work again (the split, or the pending chunks);
* fails it with the reason once it has made no progress for ``DATA_EXCHANGE_GIVE_UP_AFTER``.

It also releases the Redis lock of import jobs that ended, and removes the stored files of jobs
finished longer ago than ``DATA_EXCHANGE_KEEP_FILES_FOR`` (:mod:`.retention`). Running it twice,
or while a reducer runs, changes nothing more: every step it takes is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Max
from django.utils import timezone

from .. import dispatch
from ..conf import app_settings
from ..locks import ContentTypeLock
from ..models import ImportJob
from ..states import ChunkState, FailureKind, JobState
from . import importing, preview, retention

logger = logging.getLogger(__name__)

Sender = Callable[[str, list[Any], str], None]


def reconcile(
    send: Sender = dispatch.send,
    stale_after: float | None = None,
    give_up_after: float | None = None,
) -> dict[str, int]:
    """One pass over the active jobs; returns counts of what it did."""
    stale_after = app_settings.STALE_AFTER if stale_after is None else stale_after
    give_up_after = app_settings.GIVE_UP_AFTER if give_up_after is None else give_up_after
    now = timezone.now()
    done: dict[str, int] = {"finalised": 0, "resent": 0, "failed": 0, "released": 0}
    active = ImportJob.objects.filter(state__in=[JobState.CREATED, JobState.IMPORT_IN_PROGRESS])
    for job in active:
        idle = (now - last_progress(job)).total_seconds()
        if idle < stale_after:
            continue
        action = _reconcile_job(job, send, give_up=idle >= give_up_after)
        done[action] = done.get(action, 0) + 1
    done["released"] = release_finished_locks(now)
    removed = retention.remove_expired_files(now)
    if removed:
        done["files_removed"] = removed
    return done


def last_progress(job: ImportJob) -> datetime:
    latest = job.chunks.aggregate(at=Max("updated_at"))["at"]
    return max(filter(None, [job.updated_at, latest]))


def _reconcile_job(job: ImportJob, send: Sender, *, give_up: bool) -> str:
    if job.state == JobState.CREATED:
        return _reconcile_preview(job, send, give_up)
    return _reconcile_import(job, send, give_up)


def _reconcile_preview(job: ImportJob, send: Sender, give_up: bool) -> str:
    queue = app_settings.PREVIEW_QUEUE
    pending = list(job.chunks.filter(preview_state=ChunkState.PENDING).values_list("id", flat=True))
    if job.chunk_count is not None and not pending:
        preview.finalize_preview(job.pk)
        return "finalised"
    if give_up:
        fail = preview.fail_split if job.chunk_count is None else preview.fail_preview
        fail(job.pk, _gave_up_message(), kind=FailureKind.FAULT)
        return "failed"
    if job.chunk_count is None:
        send(dispatch.RUN_PREVIEW, [str(job.pk)], queue)
    else:
        for chunk_id in pending:
            send(dispatch.VALIDATE_CHUNK, [str(job.pk), chunk_id], queue)
    _touch(job)
    return "resent"


def _reconcile_import(job: ImportJob, send: Sender, give_up: bool) -> str:
    pending = list(job.chunks.filter(import_state=ChunkState.PENDING).values_list("id", flat=True))
    if not pending:
        importing.finalize_import(job.pk)
        return "finalised"
    if give_up:
        importing.fail_import(job, _gave_up_message(), kind=FailureKind.FAULT)
        return "failed"
    ContentTypeLock(job.content_type_id).renew(job.lock_token)
    for chunk_id in pending:
        send(dispatch.IMPORT_CHUNK, [str(job.pk), chunk_id, job.fence], app_settings.IMPORT_QUEUE)
    _touch(job)
    return "resent"


def _touch(job: ImportJob) -> None:
    """Count a re-send as progress, so the next pass waits ``stale_after`` again."""
    ImportJob.objects.filter(pk=job.pk, state=job.state).update(updated_at=timezone.now())


def _gave_up_message() -> str:
    return (
        f"No progress for {app_settings.GIVE_UP_AFTER} seconds; the workers or the broker "
        "lost this job. Chunks already written are kept; resume the import to finish it."
    )


def release_finished_locks(now: datetime) -> int:
    """Release Redis locks still held by import jobs that ended in the last day."""
    since = now - timedelta(days=1)
    ended = ImportJob.objects.filter(
        state__in=[JobState.IMPORT_SUCCEEDED, JobState.IMPORT_FAILED],
        import_finished_at__gte=since,
    ).exclude(lock_token="")
    released = 0
    for job in ended:
        lock = ContentTypeLock(job.content_type_id)
        if lock.holder() == job.lock_token and lock.release(job.lock_token):
            released += 1
    return released

"""Reconcile: finish, re-send or fail jobs that stopped making progress.

The database is the source of truth. Progress is work that finished: a state moved, the split
stored a chunk, a chunk settled (``ImportJob.progress_at``, ``ImportChunk.settled_at``); a
re-send is never progress. For a job in CREATED or IMPORT_IN_PROGRESS this step:

* finalises it if its ledger is settled and it made no progress for ``stale_after`` seconds
  (the reducer was never sent or never ran);
* re-sends a chunk whose attempt began longer ago than the chunk's hard time limit (plus a
  margin) and never ended: its worker is gone, whatever the job-wide times say;
* re-sends the job's missing work (the split, or the unsettled chunks) once it has made no
  progress, and nothing was re-sent, for ``stale_after`` seconds;
* fails it with the reason once it has made no progress for ``give_up_after`` seconds, which
  releases an import's lock.

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

from .. import dispatch, taskspec
from ..conf import app_settings
from ..locks import ContentTypeLock
from ..models import ImportJob
from ..states import IMPORT_ENDED_STATES, RUNNING_STATES, JobState, Phase
from . import chunk_ledger, importing, preview, retention

logger = logging.getLogger(__name__)

Sender = Callable[[str, list[Any], str], None]
RUNNING_MARGIN = 30  # seconds past a chunk's hard time limit before its worker is taken as gone


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
    active = ImportJob.objects.filter(state__in=RUNNING_STATES)
    for job in active:
        action = _reconcile_job(job, send, now, stale_after, give_up_after)
        if action:
            done[action] += 1
    done["released"] = release_finished_locks(now)
    removed = retention.remove_expired_files(now)
    if removed:
        done["files_removed"] = removed
    return done


def last_progress(job: ImportJob) -> datetime:
    """When the job last made progress: a move, a chunk stored or settled."""
    settled = job.chunks.aggregate(at=Max("settled_at"))["at"]
    return max(filter(None, [job.progress_at or job.updated_at, settled]))


def _reconcile_job(
    job: ImportJob, send: Sender, now: datetime, stale_after: float, give_up_after: float
) -> str | None:
    progress = last_progress(job)
    idle = (now - progress).total_seconds()
    quiet = (now - max(filter(None, [progress, job.resent_at]))).total_seconds()
    unsettled = _unsettled(job)
    if job.chunk_count is not None and not unsettled.exists():
        if idle < stale_after:
            return None  # its reducer was sent a moment ago
        _finalise(job)
        return "finalised"
    if idle >= give_up_after:
        _give_up(job, idle)
        return "failed"
    chunk_ids, split = _missing_work(job, unsettled, now, quiet >= stale_after)
    if not chunk_ids and not split:
        return None
    _resend(job, send, chunk_ids, split=split)
    return "resent"


def _missing_work(
    job: ImportJob, unsettled: Any, now: datetime, quiet: bool
) -> tuple[list[int], bool]:
    """The chunks to send again, and whether to send the split again.

    A quiet job gets all its unsettled work (the split alone while it has no chunk count: it
    starts over); otherwise only the chunks whose worker is gone.
    """
    if quiet and job.chunk_count is None:
        return [], True
    chunks = unsettled if quiet else _gone(unsettled, job, now)
    return list(chunks.values_list("id", flat=True)), False


def _unsettled(job: ImportJob) -> Any:
    """The job's chunks still to run in its phase (pending, no fault recorded for good)."""
    phase = Phase.PREVIEW if job.state == JobState.CREATED else Phase.IMPORT
    return job.chunks.filter(**chunk_ledger.unsettled(phase)).order_by("index")


def _gone(unsettled: Any, job: ImportJob, now: datetime) -> Any:
    """Chunks whose last attempt began longer ago than its hard time limit and never ended
    (so its worker is gone), not re-sent since that attempt began."""
    limit = taskspec.chunk_time_limits()["time_limit"] + RUNNING_MARGIN
    gone = unsettled.filter(
        unfinished_attempts__gt=0, started_at__lt=now - timedelta(seconds=limit)
    )
    if job.resent_at is not None:
        gone = gone.filter(started_at__gt=job.resent_at)
    return gone


def _finalise(job: ImportJob) -> None:
    if job.state == JobState.CREATED:
        preview.finalize_preview(job.pk)
    else:
        importing.finalize_import(job.pk, job.fence)


def _give_up(job: ImportJob, idle: float) -> None:
    phase = importing if job.state == JobState.IMPORT_IN_PROGRESS else preview
    phase.give_up(job, idle)


def _resend(job: ImportJob, send: Sender, chunk_ids: list[int], *, split: bool) -> None:
    """Send the missing work again; noted in ``resent_at``, which is not progress."""
    if job.state == JobState.CREATED:
        queue = app_settings.PREVIEW_QUEUE
        if split:
            send(taskspec.RUN_PREVIEW, [str(job.pk)], queue)
        for chunk_id in chunk_ids:
            send(taskspec.VALIDATE_CHUNK, [str(job.pk), chunk_id], queue)
    else:
        ContentTypeLock(job.content_type_id).renew(job.lock_token)
        for chunk_id in chunk_ids:
            send(
                taskspec.IMPORT_CHUNK, [str(job.pk), chunk_id, job.fence], app_settings.IMPORT_QUEUE
            )
    ImportJob.objects.filter(pk=job.pk, state=job.state).update(resent_at=timezone.now())
    logger.info("Job %s: re-sent %s chunk(s)%s.", job.pk, len(chunk_ids), " and the split" * split)


def release_finished_locks(now: datetime) -> int:
    """Release Redis locks still held by import jobs that ended in the last day."""
    since = now - timedelta(days=1)
    ended = ImportJob.objects.filter(
        state__in=IMPORT_ENDED_STATES,
        import_finished_at__gte=since,
    ).exclude(lock_token="")
    released = 0
    for job in ended:
        lock = ContentTypeLock(job.content_type_id)
        if lock.holder() == job.lock_token and lock.release(job.lock_token):
            released += 1
    return released

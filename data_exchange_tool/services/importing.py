"""The import: write every chunk exactly once, then reduce and release the lock.

A chunk's "done" mark is set first inside the transaction that writes its rows, so a duplicate
copy of the task waits on that row and then finds the chunk done, and a crashed copy leaves no
rows and no mark. The transaction also checks that the job still holds the import under the
fence the task was sent with, so a worker that wakes after its job was failed writes nothing.

The reducer (``finalize_import``) is the chord's body, and is also sent by whichever chunk
settles the ledger last (:func:`send_finalize_if_settled`), so an import whose chord is gone (a
chunk re-sent by reconcile, the chord's bookkeeping lost) still ends. It carries the attempt's
fence: a reducer of an earlier attempt does nothing.

Rows and the mark commit on one database: an import whose target is routed elsewhere than the
ledger writes nothing. Rows the data makes fail fail their chunk as bad data (never a fault to
resume), each named by its row in the file.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import router, transaction
from django.db.models import Exists, OuterRef, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import _faults, dispatch, taskspec
from ..conf import app_settings
from ..exceptions import SplitDatabases, StaleFence
from ..locks import ContentTypeLock
from ..models import ImportChunk, ImportJob
from ..states import ChunkState, FailureKind, JobState, Phase
from ..validation import CellError
from ..writers import Rows, RowWriteError, write_database_problem, write_rows
from . import chunk_ledger, chunk_work, transitions

logger = logging.getLogger(__name__)


def pending_chunks(job_id: Any) -> tuple[int, list[int]]:
    """The job's fence and the ids of its chunks not yet imported (none if not importing)."""
    job = ImportJob.objects.get(pk=job_id)
    if job.state != JobState.IMPORT_IN_PROGRESS:
        return job.fence, []
    ids = (
        job.chunks.filter(import_state=ChunkState.PENDING)
        .order_by("index")
        .values_list("id", flat=True)
    )
    return job.fence, list(ids)


def import_chunk(job_id: Any, chunk_id: int, fence: int) -> str:
    """Check one chunk's rows again and write them under ``fence``; returns what happened.

    Then, if the ledger is settled, send the reducer. A chunk whose workers died
    ``DATA_EXCHANGE_MAX_CHUNK_ATTEMPTS`` times fails the job, naming the chunk.
    """
    chunk = ImportChunk.objects.select_related("job").get(pk=chunk_id)
    job = chunk.job
    if chunk.import_state != ChunkState.PENDING:
        send_finalize_if_settled(job.pk, fence)  # its first copy may have died before sending
        return "already done"
    if job.state != JobState.IMPORT_IN_PROGRESS or job.fence != fence:
        return "stale"
    if chunk_ledger.used_up(chunk):
        _give_up_chunk(job, chunk)
        return "gave up"
    with chunk_ledger.attempt(chunk, Phase.IMPORT):
        outcome = _import(job, chunk, fence)
    send_finalize_if_settled(job.pk, fence)
    return outcome


def _import(job: ImportJob, chunk: ImportChunk, fence: int) -> str:
    ContentTypeLock(job.content_type_id).renew(job.lock_token)
    ready = chunk_work.rows_for_import(job, chunk)
    if ready.errors:
        _fail_chunk(job, chunk, ready.errors)
        return "invalid rows"
    try:
        written = _write(job, chunk, fence, ready.rows)
    except RowWriteError as exc:
        _fail_chunk(job, chunk, chunk_work.write_errors(job, chunk, exc.problems))
        return "database refused a row"
    ContentTypeLock(job.content_type_id).renew(job.lock_token)
    return "written" if written else "already done"


def _write(job: ImportJob, chunk: ImportChunk, fence: int, rows: Rows) -> bool:
    importer = job.importer_options
    problem = write_database_problem(importer.target_model)
    if problem:
        raise SplitDatabases(problem)
    serializer = importer.serializer_class(context={"import_job": job})
    with transaction.atomic(using=router.db_for_write(ImportChunk)):
        if not transitions.hold_for_chunk(job.pk, fence):
            raise StaleFence(f"Job {job.pk} no longer holds the import under fence {fence}.")
        now = timezone.now()
        marked = ImportChunk.objects.filter(pk=chunk.pk, import_state=ChunkState.PENDING).update(
            import_state=ChunkState.DONE,
            imported_rows=len(rows),
            import_fence=fence,
            last_error="",
            updated_at=now,
            settled_at=now,
        )
        if not marked:
            return False
        _faults.fire(
            "after_chunk_marked", job_id=job.pk, chunk_index=chunk.index, phase=Phase.IMPORT
        )
        write_rows(importer, serializer, rows, max_errors=app_settings.MAX_ERRORS_PER_CHUNK)
        _faults.fire(
            "before_chunk_commit", job_id=job.pk, chunk_index=chunk.index, phase=Phase.IMPORT
        )
    return True


def _fail_chunk(job: ImportJob, chunk: ImportChunk, errors: list[CellError]) -> None:
    with transaction.atomic():
        now = timezone.now()
        marked = ImportChunk.objects.filter(pk=chunk.pk, import_state=ChunkState.PENDING).update(
            import_state=ChunkState.FAILED,
            imported_rows=0,
            updated_at=now,
            settled_at=now,
            last_error=f"{len(errors)} row(s) failed at import; nothing of this chunk was written.",
        )
        if marked:
            chunk.row_errors.filter(phase=Phase.IMPORT).delete()
            chunk_ledger.store_errors(job, chunk, Phase.IMPORT, errors)


def _give_up_chunk(job: ImportJob, chunk: ImportChunk) -> None:
    """Fail the import: the workers writing ``chunk`` died too many times."""
    stopped = _(
        "its worker stopped {n} times before finishing it (out of memory, killed, or past "
        "DATA_EXCHANGE_CHUNK_TIME_LIMIT)."
    ).format(n=chunk.unfinished_attempts)
    last = _(" The last error before that: {error}").format(error=chunk.last_error)
    reason = _("{chunk} was not written: {stopped}{last} Resume the import to try again.").format(
        chunk=chunk_ledger.rows_label(chunk), stopped=stopped, last=last if chunk.last_error else ""
    )
    chunk_ledger.record_fault(chunk.pk, stopped)
    fail_import(job, reason, kind=FailureKind.FAULT)


def send_finalize_if_settled(job_id: Any, fence: int) -> bool:
    """Send ``finalize_import`` (after commit) if the attempt under ``fence`` has every chunk
    settled: written, failed, or still pending with its fault recorded for good.

    Called after a chunk's result or fault commits, so whoever commits last sends it, whether
    or not the chord still exists; the reducer runs once however many copies arrive.
    """
    unsettled = ImportChunk.objects.filter(
        job=OuterRef("pk"), **chunk_ledger.unsettled(Phase.IMPORT)
    )
    ready = ImportJob.objects.filter(
        pk=job_id, state=JobState.IMPORT_IN_PROGRESS, fence=fence
    ).exclude(Exists(unsettled))
    if not ready.exists():
        return False
    dispatch.send_on_commit(
        taskspec.FINALIZE_IMPORT, [None, str(job_id), fence], app_settings.IMPORT_QUEUE
    )
    return True


def finalize_import(job_id: Any, fence: int | None = None) -> None:
    """Set IMPORT_SUCCEEDED or IMPORT_FAILED from the ledger, and release the lock.

    ``fence`` is the import attempt the reducer was sent for; a reducer of an earlier attempt
    (delivered late, after a resume) does nothing. ``None``: the current attempt.
    """
    job = ImportJob.objects.get(pk=job_id)
    if fence is not None and job.fence != fence:
        logger.info("Reducer of job %s for fence %s: the job is at %s.", job.pk, fence, job.fence)
        return
    if job.state != JobState.IMPORT_IN_PROGRESS:
        _release(job)
        return
    _faults.fire("before_finalize", job_id=job.pk, phase=Phase.IMPORT)
    imported, failed, pending = _tally(job)
    now = timezone.now()
    if not failed and not pending:
        moved = transitions.move(
            job.pk,
            JobState.IMPORT_SUCCEEDED,
            expected=[JobState.IMPORT_IN_PROGRESS],
            at_fence=job.fence,
            message=f"{imported} row(s) imported",
            imported_rows=imported,
            import_finished_at=now,
        )
    else:
        moved = fail_import(
            job,
            _failure_summary(imported, failed, pending),
            kind=FailureKind.DATA if failed else FailureKind.FAULT,
            imported_rows=imported,
        )
    if moved or job.state != JobState.IMPORT_IN_PROGRESS:
        _release(job)


def fail_import(job: ImportJob, reason: str, *, kind: FailureKind, **fields: Any) -> bool:
    """Fail the import attempt ``job`` holds (its fence) and release its lock."""
    moved = transitions.fail(job.pk, Phase.IMPORT, reason, kind, at_fence=job.fence, **fields)
    _release(job)
    return moved


def give_up(job: ImportJob, idle: float) -> bool:
    """Fail an import that made no progress for ``idle`` seconds, saying what is unwritten."""
    imported, failed, pending = _tally(job)
    reason = _(
        "No progress for {seconds} seconds: the workers or the broker lost this import. {summary}"
    ).format(seconds=int(idle), summary=_failure_summary(imported, failed, pending))
    return fail_import(job, reason, kind=FailureKind.FAULT, imported_rows=imported)


def _tally(job: ImportJob) -> tuple[int, list[ImportChunk], list[ImportChunk]]:
    """The rows imported, and the failed and the pending chunks in order, from the ledger."""
    ledger = job.chunks.all()
    imported = ledger.aggregate(n=Sum("imported_rows"))["n"] or 0
    failed = list(ledger.filter(import_state=ChunkState.FAILED).order_by("index"))
    pending = list(ledger.filter(import_state=ChunkState.PENDING).order_by("index"))
    return imported, failed, pending


def _release(job: ImportJob) -> None:
    ContentTypeLock(job.content_type_id).release(job.lock_token)


def _failure_summary(imported: int, failed: list[ImportChunk], pending: list[ImportChunk]) -> str:
    parts = [f"{imported:,} row(s) were imported."]
    if failed:
        rows = sum(c.row_count for c in failed)
        parts.append(
            f"{rows:,} row(s) in chunk(s) {_indexes(failed)} were not written because rows "
            "failed validation or the database refused them; see the row errors."
        )
    if pending:
        rows = sum(c.row_count for c in pending)
        unfinished = "their tasks did not finish."
        reason = next((c.last_error for c in pending if c.last_error), unfinished)
        parts.append(
            f"{rows:,} row(s) in chunk(s) {_indexes(pending)} were not written: {reason} "
            "Resume the import to write them."
        )
    return " ".join(parts)


def _indexes(ledger: list[ImportChunk]) -> str:
    shown = ", ".join(str(c.index) for c in ledger[:10])
    return shown + (f" and {len(ledger) - 10} more" if len(ledger) > 10 else "")

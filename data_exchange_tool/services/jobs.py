"""Creating jobs and confirming, resuming imports: what admin, API and commands call."""

from __future__ import annotations

import uuid
from typing import IO, Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import dispatch, registry
from ..conf import app_settings
from ..exceptions import FileRejected, ImportLockHeld, SourceChanged, TransitionRefused
from ..locks import ContentTypeLock
from ..models import ImportChunk, ImportJob
from ..options import ImporterOptions
from ..readers import detect_format
from ..states import ChunkState, FailureKind, JobState
from ..storage import display_name, import_storage
from . import retention, transitions

HEAD_BYTES = 8192  # what the format is told from, as the preview does


def create_job(
    importer: str,
    upload: IO[bytes],
    *,
    name: str | None = None,
    user: Any = None,
    encoding: str = "",
    delimiter: str = "",
    sheet_name: str = "",
) -> ImportJob:
    """Store an uploaded file for ``importer`` and queue its preview after commit.

    ``upload`` is any binary file object (a Django ``UploadedFile``, an open file). The file is
    stored under a key made from the new job's id; ``name`` is only shown.
    """
    options = registry.get_importer(importer)
    original = display_name(name or getattr(upload, "name", "") or "upload")
    size = getattr(upload, "size", None)
    if size is not None and size > app_settings.MAX_FILE_BYTES:
        raise FileRejected(
            f"The file is {size:,} bytes; the limit is {app_settings.MAX_FILE_BYTES:,} bytes."
        )
    _refuse_unaccepted_format(options, original, upload)
    job = ImportJob(
        id=uuid.uuid4(),
        importer=importer,
        content_type=ContentType.objects.get_for_model(options.target_model),
        original_name=original,
        encoding=encoding,
        delimiter=delimiter,
        sheet_name=sheet_name,
        created_by=user if getattr(user, "pk", None) else None,
    )
    stored = import_storage().save_source(job.pk, original, upload)
    job.source_key, job.file_size = stored.key, stored.size
    job.checksum, job.source_etag = stored.checksum, stored.etag
    job.file_format = stored.key.rsplit("/", 1)[-1].removeprefix("source.")
    with transaction.atomic():
        job.save(force_insert=True)
        dispatch.send_on_commit(dispatch.RUN_PREVIEW, [str(job.pk)], app_settings.PREVIEW_QUEUE)
    return job


def _refuse_unaccepted_format(options: ImporterOptions, name: str, upload: IO[bytes]) -> None:
    """Raise :class:`FileRejected` if the file is of a format the importer does not accept.

    A file whose format cannot be told is left to the preview, which says why it cannot be read.
    """
    upload.seek(0)
    head = upload.read(HEAD_BYTES)
    upload.seek(0)
    try:
        file_format = detect_format(name, head)
    except FileRejected:
        return
    refusal = options.format_refusal(file_format, name)
    if refusal:
        raise FileRejected(refusal)


def delete_job(job: ImportJob) -> None:
    """Delete a job that is not running, with its chunks, errors and stored files.

    The files go once the deletion is committed, so a rolled-back delete keeps them.
    """
    if job.state in (JobState.CREATED, JobState.IMPORT_IN_PROGRESS):
        raise TransitionRefused("A job cannot be deleted while its preview or import runs.")
    job_id, source_key = job.pk, job.source_key
    with transaction.atomic():
        job.delete()
        transaction.on_commit(lambda: import_storage().delete_job_files(job_id, source_key))


def confirm_refusals(job: ImportJob) -> list[str]:
    """Why Confirm Import would be refused now; empty when it is allowed."""
    if job.files_removed_at is not None:
        return [retention.files_removed_refusal()]
    if job.state != JobState.PREVIEW_SUCCEEDED:
        return [
            f"The job is {job.get_state_display().lower()}; only a job whose preview succeeded "
            "can be imported."
        ]
    if job.invalid_rows:
        return [
            f"The preview found {job.invalid_rows:,} row(s) with errors; fix the file and "
            "upload it again."
        ]
    other = (
        ImportJob.objects.filter(
            content_type_id=job.content_type_id, state=JobState.IMPORT_IN_PROGRESS
        )
        .exclude(pk=job.pk)
        .first()
    )
    if other is not None:
        return [_busy_message(job, other.pk)]
    return []


def _busy_message(job: ImportJob, other: Any) -> str:
    model = job.content_type.model_class()
    label = model._meta.verbose_name_plural if model else job.content_type
    return f"Another import into {label} is running (job {other}); wait until it finishes."


def _holding_job(job: ImportJob, token: str | None) -> Any:
    """The id of the job that holds the target's lock, as far as the database knows."""
    holders = ImportJob.objects.filter(content_type_id=job.content_type_id).exclude(pk=job.pk)
    holder = (holders.filter(lock_token=token).first() if token else None) or holders.filter(
        state=JobState.IMPORT_IN_PROGRESS
    ).first()
    return holder.pk if holder is not None else "unknown"


def confirm_import(job_id: Any, *, user: Any = None) -> ImportJob:
    """Take the target's lock, move the job to IMPORT_IN_PROGRESS and queue its chunks.

    Raises :class:`TransitionRefused` (or :class:`ImportLockHeld`) naming the rule that failed.
    """
    job = ImportJob.objects.select_related("content_type").get(pk=job_id)
    refusals = confirm_refusals(job)
    if refusals:
        raise (ImportLockHeld if "Another import" in refusals[0] else TransitionRefused)(
            refusals[0]
        )
    _check_source_unchanged(job)
    _start_import(job, expected=JobState.PREVIEW_SUCCEEDED, user=user)
    job.refresh_from_db()
    return job


def _check_source_unchanged(job: ImportJob) -> None:
    """Refuse, and fail the preview, if the stored source is no longer the file previewed.

    The import writes the chunks made at preview; a source replaced since then means the
    stored file and what was previewed disagree, so nothing is imported.
    """
    try:
        import_storage().verify_source(job.source_key, size=job.file_size, etag=job.source_etag)
    except SourceChanged as exc:
        reason = str(exc)
        transitions.move(
            job.pk,
            JobState.PREVIEW_FAILED,
            expected=[JobState.PREVIEW_SUCCEEDED],
            message=reason,
            error_summary=reason,
            failure_kind=FailureKind.DATA,
        )
        raise TransitionRefused(reason) from None
    except Exception as exc:
        raise TransitionRefused(
            f"The stored file cannot be checked right now ({type(exc).__name__}); "
            "try again in a moment."
        ) from exc


def resume_import(job_id: Any, *, user: Any = None) -> ImportJob:
    """Run the unfinished chunks of an import that failed by a fault (not by its data)."""
    job = ImportJob.objects.select_related("content_type").get(pk=job_id)
    if job.files_removed_at is not None:
        raise TransitionRefused(retention.files_removed_refusal())
    if job.state != JobState.IMPORT_FAILED or job.failure_kind != FailureKind.FAULT:
        raise TransitionRefused(
            "Only an import that failed by a fault (not by bad data) can be resumed."
        )
    _start_import(job, expected=JobState.IMPORT_FAILED, user=user)
    job.refresh_from_db()
    return job


def _start_import(job: ImportJob, *, expected: JobState, user: Any) -> None:
    token = uuid.uuid4().hex
    lock = ContentTypeLock(job.content_type_id)
    if not lock.acquire(token):
        raise ImportLockHeld(_busy_message(job, _holding_job(job, lock.holder())))
    try:
        with transaction.atomic():
            moved = transitions.move(
                job.pk,
                JobState.IMPORT_IN_PROGRESS,
                expected=[expected],
                fence=job.fence + 1,
                lock_token=token,
                failure_kind="",
                error_summary="",
                import_started_at=timezone.now(),
                import_finished_at=None,
                resent_at=None,
                confirmed_by=user if getattr(user, "pk", None) else None,
            )
            if not moved:
                raise TransitionRefused("The job changed state meanwhile; reload the page.")
            if ImportJob.objects.filter(pk=job.pk, files_removed_at__isnull=False).exists():
                raise TransitionRefused(retention.files_removed_refusal())  # removed meanwhile
            ImportChunk.objects.filter(job=job, import_state=ChunkState.PENDING).update(
                import_attempts=0, unfinished_attempts=0, started_at=None, last_error=""
            )
            dispatch.send_on_commit(dispatch.RUN_IMPORT, [str(job.pk)], app_settings.IMPORT_QUEUE)
    except IntegrityError:
        lock.release(token)
        raise ImportLockHeld(_busy_message(job, "another job")) from None
    except BaseException:
        lock.release(token)
        raise

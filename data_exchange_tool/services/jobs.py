"""Creating jobs and confirming, resuming imports: what admin, API and commands call."""

from __future__ import annotations

import uuid
from typing import IO, Any

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import dispatch, registry, taskspec
from ..conf import app_settings
from ..exceptions import FileRejected, SourceChanged, TransitionRefused
from ..locks import ContentTypeLock
from ..models import ImportChunk, ImportJob
from ..options import ImporterOptions
from ..readers import detect_format
from ..states import ChunkState, FailureKind, JobState, Phase
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
        dispatch.send_on_commit(taskspec.RUN_PREVIEW, [str(job.pk)], app_settings.PREVIEW_QUEUE)
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


def delete_job(job: ImportJob | Any) -> None:
    """Delete a job that is not running, with its chunks, errors and stored files.

    The state is checked and the row deleted under the job's row lock, as every move is, so a
    copy of the job loaded before a Confirm never deletes the import that Confirm started.
    The files go once the deletion is committed, so a rolled-back delete keeps them.
    """
    job_id = getattr(job, "pk", job)
    with transaction.atomic():
        locked = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if locked is None:
            return
        transitions.can_delete(locked).enforce()
        source_key = locked.source_key
        locked.delete()
        transaction.on_commit(lambda: import_storage().delete_job_files(job_id, source_key))


def cancel_job(job_id: Any, *, user: Any = None) -> ImportJob:
    """Cancel a running preview or import: it ends PREVIEW_FAILED or IMPORT_FAILED with
    "Cancelled by <user>", and an import's lock is released.

    The move takes the job's row lock, so it waits for chunks in flight to commit (they count)
    and every chunk that starts later finds the job no longer running and writes nothing. A
    cancelled import failed by a fault: Resume writes its remaining chunks. Raises
    :class:`TransitionRefused` if the job is not running.
    """
    reason = _("Cancelled by %(user)s.") % {"user": _user_name(user)}
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        transitions.can_cancel(job).enforce()
        cancel = _cancel_preview if job.state == JobState.CREATED else _cancel_import
        if not cancel(job, reason):  # moved meanwhile by a writer the row lock did not stop
            raise TransitionRefused(_("The job changed state meanwhile; reload the page."))
    job.refresh_from_db()
    return job


def _user_name(user: Any) -> str:
    if user is None or not getattr(user, "pk", None):
        return _("an administrator")
    return user.get_username()


def _cancel_preview(job: ImportJob, reason: str) -> bool:
    return transitions.fail(job.pk, Phase.PREVIEW, reason, None)


def _cancel_import(job: ImportJob, reason: str) -> bool:
    imported = job.chunks.aggregate(n=Sum("imported_rows"))["n"] or 0
    rest = (job.total_rows or 0) - imported
    summary = (
        reason
        + " "
        + _("%(imported)s row(s) were imported; resume the import to write the other %(rest)s.")
        % {"imported": f"{imported:,}", "rest": f"{rest:,}"}
    )
    moved = transitions.fail(
        job.pk, Phase.IMPORT, reason, FailureKind.FAULT, summary=summary, imported_rows=imported
    )
    if moved:
        token = job.lock_token
        transaction.on_commit(lambda: ContentTypeLock(job.content_type_id).release(token))
    return moved


def confirm_refusals(job: ImportJob) -> list[str]:
    """Why Confirm Import would be refused now; empty when it is allowed."""
    verdict = transitions.can_confirm(job)
    return [verdict.reason] if not verdict else []


def lock_token_for(job_id: Any) -> str:
    """A new lock token that names its job: the job's hex id, then a random part."""
    return uuid.UUID(str(job_id)).hex + uuid.uuid4().hex


def job_of_token(token: str | None) -> uuid.UUID | None:
    """The job a lock token names (see :func:`lock_token_for`), if it names one."""
    try:
        return uuid.UUID(hex=token[:32]) if token else None
    except ValueError:
        return None


def _holding_job(job: ImportJob, token: str | None) -> Any:
    """The id of the job that holds the target's lock: named by the token itself (even before
    that job's move commits), else found in the database."""
    named = job_of_token(token)
    if named is not None and named != job.pk:
        return named
    holders = ImportJob.objects.filter(content_type_id=job.content_type_id).exclude(pk=job.pk)
    holder = holders.filter(lock_token=token).first() if token else None
    return holder.pk if holder is not None else transitions.importing_job(job)


def confirm_import(job_id: Any, *, user: Any = None) -> ImportJob:
    """Take the target's lock, move the job to IMPORT_IN_PROGRESS and queue its chunks.

    Raises :class:`TransitionRefused` (or :class:`ImportLockHeld`) naming the rule that failed.
    """
    job = ImportJob.objects.select_related("content_type").get(pk=job_id)
    transitions.can_confirm(job).enforce()
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
        transitions.fail(
            job.pk, Phase.PREVIEW, reason, FailureKind.DATA, expected=JobState.PREVIEW_SUCCEEDED
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
    transitions.can_resume(job).enforce()
    _start_import(job, expected=JobState.IMPORT_FAILED, user=user)
    job.refresh_from_db()
    return job


def _start_import(job: ImportJob, *, expected: JobState, user: Any) -> None:
    token = lock_token_for(job.pk)
    lock = ContentTypeLock(job.content_type_id)
    if not lock.acquire(token):
        raise transitions.lock_held(job, _holding_job(job, lock.holder()))
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
            dispatch.send_on_commit(taskspec.RUN_IMPORT, [str(job.pk)], app_settings.IMPORT_QUEUE)
    except IntegrityError:
        lock.release(token)
        raise transitions.lock_held(job, transitions.importing_job(job)) from None
    except BaseException:
        lock.release(token)
        raise

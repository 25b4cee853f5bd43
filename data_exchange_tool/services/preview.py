"""The preview: split the source into chunks, validate every chunk, then reduce.

The split stores one chunk at a time and sends its validation at once, so chunks are validated
while the rest of the file is still being split. There is no chord: a barrier in the database
(:func:`send_finalize_if_settled`) sends the reducer once the split is done and every chunk is
settled. Each step is idempotent: run twice (a redelivered task, a reconcile, a reducer sent by
two chunks), it changes nothing more.

A file that kills the worker reading it (out of memory) is redelivered; after
``DATA_EXCHANGE_MAX_CHUNK_ATTEMPTS`` split attempts, or validation attempts of one chunk, that
never ended, the preview fails saying where the file stopped the worker.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import _faults, chunkfiles, dispatch, taskspec
from ..conf import app_settings
from ..exceptions import FileRejected, SourceChanged
from ..models import ImportChunk, ImportJob
from ..readers import ReadOptions, detect_format, open_table
from ..states import ChunkState, FailureKind, JobState, Phase
from ..storage import import_storage
from ..validation import match_header
from . import chunk_ledger, chunk_work, duplicates, transitions

logger = logging.getLogger(__name__)

HEAD_BYTES = 8192


def split_source(job_id: Any) -> list[int]:
    """Stream the source once into Parquet chunks and the chunk ledger, sending each chunk's
    validation as soon as the chunk is stored.

    Returns the ids of the chunks still to validate (none if the job is past its preview or the
    file was refused, in which case the job is PREVIEW_FAILED with the reason). Run again after
    the split finished, it sends the validation of those chunks again.
    """
    job = ImportJob.objects.get(pk=job_id)
    if job.state != JobState.CREATED:
        return []
    if job.chunk_count is None:
        if job.unfinished_splits >= app_settings.MAX_CHUNK_ATTEMPTS:
            fail_split(job.pk, _split_stopped_message(job))
            return []
        ImportJob.objects.filter(pk=job.pk, preview_started_at__isnull=True).update(
            preview_started_at=timezone.now()  # a worker has taken the preview
        )
        try:
            _split_attempt(job)
        except (FileRejected, SourceChanged) as exc:
            fail_split(job.pk, str(exc))
            return []
        except PreviewStopped:
            return []
        pending = _pending_chunks(job)
    else:  # a split delivered again after it finished: its sends may have been lost
        pending = _pending_chunks(job)
        for chunk_id in pending:
            _send_validation(job.pk, chunk_id)
    send_finalize_if_settled(job.pk)
    return pending


def _pending_chunks(job: ImportJob) -> list[int]:
    pending = job.chunks.filter(preview_state=ChunkState.PENDING).order_by("index")
    return list(pending.values_list("id", flat=True))


def fail_split(job_id: Any, reason: str, *, kind: FailureKind = FailureKind.DATA) -> bool:
    """End a preview whose split failed, and drop the chunks it had already stored (with the
    row errors their validation found), as if none had been made."""
    failed = transitions.fail(job_id, Phase.PREVIEW, reason, kind)
    if failed:
        _discard_chunks(job_id)
    return failed


def fail_split_by_fault(job_id: Any, exc: Exception) -> bool:
    """End a preview whose split raised ``exc`` for good (not a refusal of the file): a fault,
    named to the user."""
    reason = _("The file could not be read: {error}: {message}").format(
        error=type(exc).__name__, message=exc
    )
    return fail_split(job_id, reason, kind=FailureKind.FAULT)


def give_up(job: ImportJob, idle: float) -> bool:
    """Fail a preview that made no progress for ``idle`` seconds."""
    reason = _(
        "No progress for {seconds} seconds: the workers or the broker lost this preview. "
        "Upload the file again."
    ).format(seconds=int(idle))
    if job.chunk_count is None:
        return fail_split(job.pk, reason, kind=FailureKind.FAULT)
    return transitions.fail(job.pk, Phase.PREVIEW, reason, FailureKind.FAULT)


def _split_attempt(job: ImportJob) -> None:
    """Split once, counted in ``unfinished_splits`` until it returns or raises an Exception: a
    worker killed while splitting leaves it counted."""
    jobs = ImportJob.objects.filter(pk=job.pk)
    jobs.update(unfinished_splits=F("unfinished_splits") + 1)
    ended = {"unfinished_splits": Greatest(F("unfinished_splits") - 1, 0)}
    try:
        _split(job)
    except Exception:
        jobs.update(**ended)
        raise
    jobs.update(**ended)


def _split_stopped_message(job: ImportJob) -> str:
    """Why the split is given up: how often, and how far the last attempt got."""
    reached = job.chunks.aggregate(row=Max(F("first_row") + F("row_count") - 1))["row"] or 1
    return _(
        "The file made the worker stop (out of memory?) {n} times while reading it, each time "
        "after row {row:,}. Look at the rows after it (a very long line or cell?), or split "
        "the file."
    ).format(n=job.unfinished_splits, row=reached)


def read_options(job: ImportJob) -> ReadOptions:
    s = app_settings
    return ReadOptions(
        encoding=job.encoding,
        delimiter=job.delimiter,
        sheet_name=job.sheet_name,
        max_field_bytes=s.MAX_FIELD_BYTES,
        max_record_bytes=s.MAX_RECORD_BYTES,
        max_rows=s.MAX_ROWS,
        xlsx_max_uncompressed_bytes=s.XLSX_MAX_UNCOMPRESSED_BYTES,
        xlsx_max_compression_ratio=s.XLSX_MAX_COMPRESSION_RATIO,
        xlsx_max_shared_strings_bytes=s.XLSX_MAX_SHARED_STRINGS_BYTES,
        gzip_max_compression_ratio=s.GZIP_MAX_COMPRESSION_RATIO,
        temp_dir=s.TEMP_DIR,
    )


def _open_source(job: ImportJob) -> Any:
    return import_storage().open_source(job.source_key, size=job.file_size, etag=job.source_etag)


def _split(job: ImportJob) -> None:
    _discard_chunks(job.pk)  # leftovers of an interrupted split
    with _open_source(job) as stream:
        file_format = detect_format(job.original_name, stream.read(HEAD_BYTES))
    importer = job.importer_options
    refusal = importer.format_refusal(file_format, job.original_name)
    if refusal:
        raise FileRejected(refusal)
    chunk_size = importer.chunk_size or app_settings.CHUNK_SIZE
    max_chars = app_settings.CHUNK_MAX_BYTES
    with _open_source(job) as stream, open_table(file_format, stream, read_options(job)) as table:
        matched = match_header(table.header, importer)
        field_indexes = matched.indexes
        column_map = {name: table.header[i].strip() for name, i in field_indexes.items()}
        # before the first chunk is stored: its validation names columns as the file does
        ImportJob.objects.filter(pk=job.pk).update(
            file_format=file_format,
            header=list(column_map.values()),
            column_map=column_map,
            ignored_columns=matched.ignored,
        )
        builder = chunkfiles.ChunkBuilder(field_indexes, len(table.header))
        ledger: list[ImportChunk] = []
        chunk_start = table.chars_read
        for row_number, cells in table.rows():
            builder.add(row_number, cells)
            if len(builder) >= chunk_size or table.chars_read - chunk_start >= max_chars:
                ledger.append(_store_chunk(job, len(ledger), builder))
                chunk_start = table.chars_read
                _stop_if_not_previewing(job.pk)
        if len(builder):
            ledger.append(_store_chunk(job, len(ledger), builder))
        detected = table.detected
    total = sum(c.row_count for c in ledger)
    if total == 0:
        raise FileRejected("The file has a header but no rows to import.")
    ImportJob.objects.filter(pk=job.pk).update(
        detected_delimiter=detected.get("delimiter", "")[:1],
        chunk_count=len(ledger),
        total_rows=total,
        progress_at=timezone.now(),
    )


class PreviewStopped(Exception):
    """The job left CREATED (it was cancelled) while its file was being split."""


def _stop_if_not_previewing(job_id: Any) -> None:
    if not ImportJob.objects.filter(pk=job_id, state=JobState.CREATED).exists():
        raise PreviewStopped(job_id)


def _discard_chunks(job_id: Any) -> None:
    """Delete a job's chunk ledger and the row errors on it.

    The chunk rows are locked first, so a validation committing its result finishes before they
    go (its errors go with them), and one that commits later finds no chunk to mark.
    """
    with transaction.atomic():
        ledger = ImportChunk.objects.filter(job_id=job_id)
        list(ledger.select_for_update().values_list("pk", flat=True))
        ledger.delete()


def _store_chunk(job: ImportJob, index: int, builder: chunkfiles.ChunkBuilder) -> ImportChunk:
    """Store one chunk's rows and its ledger row, and send its validation."""
    storage = import_storage()
    key = storage.chunk_key(job.pk, index)
    storage.write_bytes(key, builder.encode())
    chunk = ImportChunk.objects.create(
        job=job,
        index=index,
        first_row=builder.row_numbers[0],
        row_count=len(builder),
        storage_key=key,
    )
    ImportJob.objects.filter(pk=job.pk).update(progress_at=timezone.now())
    builder.clear()
    _faults.fire("after_chunk_stored", job_id=job.pk, chunk_index=index, phase=Phase.PREVIEW)
    _send_validation(job.pk, chunk.pk)
    return chunk


def _send_validation(job_id: Any, chunk_id: int) -> None:
    dispatch.send_on_commit(
        taskspec.VALIDATE_CHUNK, [str(job_id), chunk_id], app_settings.PREVIEW_QUEUE
    )


def validate_chunk(job_id: Any, chunk_id: int) -> None:
    """Validate one chunk's rows and store its counts and row errors, once; then send the
    reducer if the preview is settled.

    A chunk that a restarted split deleted (before or during its validation) is skipped.
    """
    chunk = ImportChunk.objects.select_related("job").filter(pk=chunk_id).first()
    if chunk is None or chunk.job.state != JobState.CREATED:
        return
    if chunk.preview_state == ChunkState.PENDING and chunk_ledger.used_up(chunk):
        chunk_ledger.record_fault(chunk.pk, _validation_stopped_message(chunk))
    elif chunk.preview_state == ChunkState.PENDING:
        try:
            with chunk_ledger.attempt(chunk, Phase.PREVIEW):
                _validate(chunk)
        except Exception:
            if _exists(chunk):
                raise
            logger.info(
                "Chunk %s of job %s was deleted while it was validated.", chunk.index, chunk.job_id
            )
            return
    send_finalize_if_settled(chunk.job_id)


def _validation_stopped_message(chunk: ImportChunk) -> str:
    return _(
        "the file made the worker stop (out of memory?) {n} times while reading this chunk."
    ).format(n=chunk.unfinished_attempts)


def _exists(chunk: ImportChunk) -> bool:
    return ImportChunk.objects.filter(pk=chunk.pk).exists()


def _validate(chunk: ImportChunk) -> None:
    job = chunk.job
    rows = chunk_work.load_rows(chunk)
    result = chunk_work.validate_rows(job, rows)
    key_hashes = duplicates.chunk_key_hashes(job, rows.row_numbers, result.valid)
    if not result.errors and _exists(chunk):  # a deleted chunk's key is its successor's
        chunk_work.store_validated(job, chunk, result.valid)
    with transaction.atomic():
        marked = ImportChunk.objects.filter(pk=chunk.pk, preview_state=ChunkState.PENDING).update(
            preview_state=ChunkState.DONE,
            valid_rows=len(result.valid),
            invalid_rows=result.invalid_rows,
            key_hashes=key_hashes,
            last_error="",
            updated_at=timezone.now(),
            settled_at=timezone.now(),
        )
        if not marked:
            return  # another copy of this task finished first, or the chunk was deleted
        _faults.fire(
            "after_chunk_marked", job_id=job.pk, chunk_index=chunk.index, phase=Phase.PREVIEW
        )
        chunk_ledger.store_errors(job, chunk, Phase.PREVIEW, result.errors)


def send_finalize_if_settled(job_id: Any) -> bool:
    """Send ``finalize_preview`` (after commit) if the split is done and every chunk is settled:
    validated, or still pending with its fault recorded for good. True if it sent.

    Called after the split commits its chunk count and after a chunk's result or fault
    commits. Whoever commits last sees everything settled, so at least one caller sends; when
    several do, every copy of the reducer but the first does nothing.
    """
    unsettled = ImportChunk.objects.filter(
        job=OuterRef("pk"), **chunk_ledger.unsettled(Phase.PREVIEW)
    )
    ready = ImportJob.objects.filter(
        pk=job_id, state=JobState.CREATED, chunk_count__isnull=False
    ).exclude(Exists(unsettled))
    if not ready.exists():
        return False
    dispatch.send_on_commit(taskspec.FINALIZE_PREVIEW, [str(job_id)], app_settings.PREVIEW_QUEUE)
    return True


def finalize_preview(job_id: Any) -> None:
    """Reduce the chunks' results into the job's counts, sample and preview state.

    The job's row stays locked until the reduction commits, so a second copy running at the
    same time waits, then finds the job no longer CREATED and does nothing.
    """
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.state != JobState.CREATED or job.chunk_count is None:
            return
        _faults.fire("before_finalize", job_id=job.pk, phase=Phase.PREVIEW)
        _reduce(job)


def _reduce(job: ImportJob) -> None:
    ledger = list(job.chunks.defer("key_hashes").order_by("index"))
    pending = [c for c in ledger if c.preview_state != ChunkState.DONE]
    if pending:
        first = pending[0]
        reason = first.last_error or "its task did not finish"
        transitions.fail(
            job.pk,
            Phase.PREVIEW,
            f"Chunk {first.index} (rows {first.first_row}–"
            f"{first.first_row + first.row_count - 1}) could not be validated: {reason}",
            FailureKind.FAULT,
        )
        return
    duplicate_rows = duplicates.report_duplicate_keys(job, ledger)
    invalid = sum(c.invalid_rows or 0 for c in ledger) + duplicate_rows
    sample = _sample(ledger[0]) if ledger else []
    transitions.move(
        job.pk,
        JobState.PREVIEW_SUCCEEDED,
        expected=[JobState.CREATED],
        message=f"{invalid} invalid row(s)",
        valid_rows=job.total_rows - invalid,
        invalid_rows=invalid,
        preview_sample=sample,
        preview_finished_at=timezone.now(),
    )


def _sample(chunk: ImportChunk) -> list[dict[str, Any]]:
    limit = app_settings.PREVIEW_SAMPLE_ROWS
    rows = chunkfiles.load_rows(chunk.storage_key)
    sample = []
    for row_number, _extra, data in rows.records():
        if len(sample) >= limit:
            break
        sample.append({"row": row_number, "values": data})
    return sample

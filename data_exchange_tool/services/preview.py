"""The preview: split the source into chunks, validate every chunk, then reduce.

Each step is idempotent: run twice (a redelivered task, a reconcile), it changes nothing more.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import chunks, hooks
from ..conf import app_settings
from ..exceptions import FileRejected, SourceChanged
from ..models import ImportChunk, ImportJob, RowError
from ..readers import ReadOptions, detect_format, open_table
from ..states import ChunkState, FailureKind, JobState, Phase
from ..storage import import_storage
from ..validation import match_header
from . import chunk_work, duplicates, transitions

logger = logging.getLogger(__name__)

HEAD_BYTES = 8192


def split_source(job_id: Any) -> list[int]:
    """Stream the source once into Parquet chunks and the chunk ledger.

    Returns the ids of the chunks still to validate (none if the job is past its preview or the
    file was refused, in which case the job is PREVIEW_FAILED with the reason).
    """
    job = ImportJob.objects.get(pk=job_id)
    if job.state != JobState.CREATED:
        return []
    if job.chunk_count is None:
        try:
            _split(job)
        except (FileRejected, SourceChanged) as exc:
            fail_preview(job.pk, str(exc))
            return []
    return list(
        job.chunks.filter(preview_state=ChunkState.PENDING)
        .order_by("index")
        .values_list("id", flat=True)
    )


def read_options(job: ImportJob) -> ReadOptions:
    s = app_settings
    return ReadOptions(
        encoding=job.encoding,
        delimiter=job.delimiter,
        sheet_name=job.sheet_name,
        max_field_bytes=s.MAX_FIELD_BYTES,
        max_rows=s.MAX_ROWS,
        xlsx_max_uncompressed_bytes=s.XLSX_MAX_UNCOMPRESSED_BYTES,
        xlsx_max_compression_ratio=s.XLSX_MAX_COMPRESSION_RATIO,
        xlsx_max_shared_strings_bytes=s.XLSX_MAX_SHARED_STRINGS_BYTES,
        temp_dir=s.TEMP_DIR,
    )


def _open_source(job: ImportJob) -> Any:
    return import_storage().open_source(job.source_key, size=job.file_size, etag=job.source_etag)


def _split(job: ImportJob) -> None:
    job.chunks.all().delete()  # leftovers of an interrupted split
    with _open_source(job) as stream:
        file_format = detect_format(job.original_name, stream.read(HEAD_BYTES))
    importer = job.importer_options
    chunk_size = importer.chunk_size or app_settings.CHUNK_SIZE
    with _open_source(job) as stream, open_table(file_format, stream, read_options(job)) as table:
        field_indexes = match_header(table.header, importer)
        column_map = {name: table.header[i].strip() for name, i in field_indexes.items()}
        builder = chunks.ChunkBuilder(field_indexes)
        ledger: list[ImportChunk] = []
        for row_number, cells in table.rows():
            builder.add(row_number, cells)
            if len(builder) >= chunk_size:
                ledger.append(_write_chunk(job, len(ledger), builder))
        if len(builder):
            ledger.append(_write_chunk(job, len(ledger), builder))
        detected = table.detected
    total = sum(c.row_count for c in ledger)
    if total == 0:
        raise FileRejected("The file has a header but no rows to import.")
    with transaction.atomic():
        ImportChunk.objects.bulk_create(ledger)
        ImportJob.objects.filter(pk=job.pk).update(
            file_format=file_format,
            header=list(column_map.values()),
            column_map=column_map,
            detected_delimiter=detected.get("delimiter", "")[:1],
            chunk_count=len(ledger),
            total_rows=total,
            preview_started_at=timezone.now(),
        )


def _write_chunk(job: ImportJob, index: int, builder: chunks.ChunkBuilder) -> ImportChunk:
    storage = import_storage()
    key = storage.chunk_key(job.pk, index)
    storage.write_bytes(key, builder.encode())
    chunk = ImportChunk(
        job=job,
        index=index,
        first_row=builder.row_numbers[0],
        row_count=len(builder),
        storage_key=key,
    )
    builder.clear()
    return chunk


def validate_chunk(job_id: Any, chunk_id: int) -> None:
    """Validate one chunk's rows and store its counts and row errors, once."""
    chunk = ImportChunk.objects.select_related("job").get(pk=chunk_id)
    job = chunk.job
    if chunk.preview_state != ChunkState.PENDING or job.state != JobState.CREATED:
        return
    chunk_work.count_attempt(chunk, Phase.PREVIEW)
    rows = chunk_work.load_rows(chunk)
    result = chunk_work.validate_rows(job, rows)
    key_hashes = duplicates.chunk_key_hashes(job, rows, {row for row, _data in result.valid})
    if not result.errors:
        chunk_work.store_validated(job, chunk, result.valid)
    with transaction.atomic():
        marked = ImportChunk.objects.filter(pk=chunk.pk, preview_state=ChunkState.PENDING).update(
            preview_state=ChunkState.DONE,
            valid_rows=len(result.valid),
            invalid_rows=result.invalid_rows,
            key_hashes=key_hashes,
            last_error="",
            updated_at=timezone.now(),
        )
        if not marked:
            return  # another copy of this task finished first
        hooks.fire(
            "after_chunk_marked", job_id=job.pk, chunk_index=chunk.index, phase=Phase.PREVIEW
        )
        chunk_work.store_errors(job, chunk, Phase.PREVIEW, result.errors)


def finalize_preview(job_id: Any) -> None:
    """Reduce the chunks' results into the job's counts, sample and preview state."""
    job = ImportJob.objects.get(pk=job_id)
    if job.state != JobState.CREATED or job.chunk_count is None:
        return
    hooks.fire("before_finalize", job_id=job.pk, phase=Phase.PREVIEW)
    ledger = list(job.chunks.defer("key_hashes").order_by("index"))
    pending = [c for c in ledger if c.preview_state != ChunkState.DONE]
    if pending:
        first = pending[0]
        reason = first.last_error or "its task did not finish"
        fail_preview(
            job.pk,
            f"Chunk {first.index} (rows {first.first_row}–"
            f"{first.first_row + first.row_count - 1}) could not be validated: {reason}",
            kind=FailureKind.FAULT,
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
    rows = chunks.decode(import_storage().read_bytes(chunk.storage_key))
    sample = []
    for row_number, _extra, data in rows.records():
        if len(sample) >= limit:
            break
        sample.append({"row": row_number, "values": data})
    return sample


def fail_preview(job_id: Any, reason: str, *, kind: FailureKind = FailureKind.DATA) -> bool:
    """End the preview with a reason the user can act on."""
    RowError.objects.filter(job_id=job_id, phase=Phase.PREVIEW, chunk__isnull=True).delete()
    return transitions.move(
        job_id,
        JobState.PREVIEW_FAILED,
        expected=[JobState.CREATED],
        message=reason,
        error_summary=reason,
        failure_kind=kind,
        preview_finished_at=timezone.now(),
    )

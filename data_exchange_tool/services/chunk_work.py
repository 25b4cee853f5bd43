"""What the preview and the import share about one chunk: loading it and storing its errors."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from .. import chunks
from ..conf import app_settings
from ..models import ImportChunk, ImportJob, RowError
from ..states import Phase
from ..storage import import_storage
from ..validation import CellError, RowValidator, ValidationResult


def count_attempt(chunk: ImportChunk, phase: Phase) -> int:
    """Record one more attempt at ``chunk`` in ``phase``; returns the new count."""
    field = "preview_attempts" if phase == Phase.PREVIEW else "import_attempts"
    ImportChunk.objects.filter(pk=chunk.pk).update(
        **{field: F(field) + 1}, updated_at=timezone.now()
    )
    return getattr(chunk, field) + 1


def validate_chunk_rows(job: ImportJob, chunk: ImportChunk) -> ValidationResult:
    """Read a chunk from storage and validate its rows with the importer's serializer."""
    rows = chunks.decode(import_storage().read_bytes(chunk.storage_key))
    validator = RowValidator(
        job.importer_options,
        job.column_map,
        context={"import_job": job},
        max_errors=app_settings.MAX_ERRORS_PER_CHUNK,
    )
    return validator.validate(rows.records())


def store_errors(
    job: ImportJob, chunk: ImportChunk | None, phase: Phase, errors: list[CellError]
) -> None:
    RowError.objects.bulk_create(
        [
            RowError(
                job=job,
                chunk=chunk,
                phase=phase,
                row_number=e.row_number,
                column=e.column,
                field=e.field,
                code=e.code,
                message=e.message,
                value=e.value,
            )
            for e in errors
        ],
        batch_size=500,
    )


def record_fault(chunk_id: int, message: str) -> None:
    """Note a fault on a chunk (it stays pending, so a resume runs it again)."""
    ImportChunk.objects.filter(pk=chunk_id).update(
        last_error=message[:2000], updated_at=timezone.now()
    )

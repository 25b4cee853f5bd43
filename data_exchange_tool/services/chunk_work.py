"""What the preview and the import share about one chunk's rows: loading them, validating them,
keeping the validated rows for the import, and the errors of rows refused at import.

The chunk's ledger (attempts, faults, stored row errors) is :mod:`.chunk_ledger`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .. import chunkfiles
from ..conf import app_settings
from ..models import ImportChunk, ImportJob
from ..validation import CellError, RowValidator, ValidationResult, recheck
from ..validation.errors import clip
from ..writers import RowProblem, Rows

logger = logging.getLogger(__name__)


def load_rows(chunk: ImportChunk) -> chunkfiles.ChunkRows:
    """A chunk's rows as stored by the split."""
    return chunkfiles.load_rows(chunk.storage_key)


def validate_chunk_rows(job: ImportJob, chunk: ImportChunk) -> ValidationResult:
    """Read a chunk from storage and validate its rows with the importer's serializer."""
    return validate_rows(job, load_rows(chunk))


def validate_rows(job: ImportJob, rows: chunkfiles.ChunkRows) -> ValidationResult:
    """Validate a chunk's rows with the importer's serializer."""
    validator = RowValidator(
        job.importer_options,
        job.column_map,
        context={"import_job": job},
        max_errors=app_settings.MAX_ERRORS_PER_CHUNK,
    )
    return validator.validate_chunk(rows)


def import_plan(job: ImportJob) -> recheck.Plan | None:
    """How the import may trust the preview's validated rows; ``None``: validate again."""
    importer = job.importer_options
    return recheck.plan_for(importer, importer.serializer_class(context={"import_job": job}))


def store_validated(
    job: ImportJob, chunk: ImportChunk, rows: list[tuple[int, dict[str, Any]]]
) -> None:
    """Keep a chunk's validated rows beside it for the import (when the import can use them)."""
    plan = import_plan(job)
    if plan is None:
        return
    try:
        chunkfiles.save_validated(plan, chunk.storage_key, rows)
    except chunkfiles.NotStorable as exc:
        logger.info(
            "Chunk %s: validated rows not stored (%s); the import validates again.",
            chunk.index,
            exc,
        )


@dataclass
class ReadyRows:
    """A chunk's rows ready to write (a list of records or the stored columns), or the errors
    that stop it."""

    rows: Rows = field(default_factory=list)
    errors: list[CellError] = field(default_factory=list)


def rows_for_import(job: ImportJob, chunk: ImportChunk) -> ReadyRows:
    """A chunk's rows ready to write: the preview's validated rows checked again against the
    database, or (when none were kept) the whole chunk validated again."""
    plan = import_plan(job)
    stored = chunkfiles.load_validated(plan, chunk.storage_key) if plan is not None else None
    if plan is None or stored is None or len(stored) != chunk.row_count:
        result = validate_chunk_rows(job, chunk)
        return ReadyRows(result.valid, result.errors)
    cells = _CellText(chunk)
    failures = recheck.Recheck(plan, stored, cells).failures()
    if not failures:
        return ReadyRows(stored)
    return ReadyRows(
        errors=[_cell_error(job, f, cells(f.name, f.row_number)) for f in failures][
            : app_settings.MAX_ERRORS_PER_CHUNK
        ],
    )


class _CellText:
    """The text of a chunk's cells as in the file, read only when asked for."""

    def __init__(self, chunk: ImportChunk) -> None:
        self.chunk = chunk
        self.rows: chunkfiles.ChunkRows | None = None
        self.index: dict[int, int] = {}

    def __call__(self, name: str, row_number: int) -> str | None:
        if self.rows is None:
            self.rows = chunkfiles.load_rows(self.chunk.storage_key)
            self.index = {r: i for i, r in enumerate(self.rows.row_numbers)}
        column = self.rows.columns.get(name)
        return None if column is None else column[self.index[row_number]]


def _cell_error(job: ImportJob, failure: recheck.Failure, text: str | None) -> CellError:
    column = job.column_map.get(failure.name, failure.name)
    return CellError(
        failure.row_number, column, failure.name, failure.code, failure.message, clip(text)
    )


def write_errors(job: ImportJob, chunk: ImportChunk, problems: list[RowProblem]) -> list[CellError]:
    """The errors of rows refused while being written, with the column and cell of the file."""
    cells = _CellText(chunk)
    return [
        _cell_error(
            job,
            recheck.Failure(p.row_number, p.field, p.code, p.message),
            cells(p.field, p.row_number) if p.field else None,
        )
        for p in problems[: app_settings.MAX_ERRORS_PER_CHUNK]
    ]

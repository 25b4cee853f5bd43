"""The chunk ledger's bookkeeping: attempts at a chunk, faults recorded on it, and the row
errors stored for it (shared by the preview and the import)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from ..conf import app_settings
from ..models import ImportChunk, ImportJob, RowError
from ..states import ChunkState, Phase
from ..validation import CellError

logger = logging.getLogger(__name__)


def unsettled(phase: Phase) -> dict[str, str]:
    """Lookups of the chunks still to run in ``phase``: pending, with no fault recorded for
    good (a chunk with a recorded fault is settled: it fails its job at the reducer)."""
    state = "preview_state" if phase == Phase.PREVIEW else "import_state"
    return {state: ChunkState.PENDING, "last_error": ""}


@contextmanager
def attempt(chunk: ImportChunk, phase: Phase) -> Iterator[None]:
    """One attempt at ``chunk`` in ``phase``: counted and timed when it begins, and ended when
    the block returns or raises an ``Exception``.

    An attempt whose process dies (out of memory, SIGKILL, the hard time limit, a host lost)
    never ends, so ``unfinished_attempts`` counts the workers the chunk has cost, and
    ``started_at`` tells reconcile when a worker still running it must have stopped.
    """
    field = "preview_attempts" if phase == Phase.PREVIEW else "import_attempts"
    now = timezone.now()
    ImportChunk.objects.filter(pk=chunk.pk).update(
        **{field: F(field) + 1},
        unfinished_attempts=F("unfinished_attempts") + 1,
        started_at=now,
        updated_at=now,
    )
    try:
        yield
    except Exception:
        _end_attempt(chunk)
        raise
    _end_attempt(chunk)


def _end_attempt(chunk: ImportChunk) -> None:
    try:
        ImportChunk.objects.filter(pk=chunk.pk).update(
            unfinished_attempts=Greatest(F("unfinished_attempts") - 1, 0)
        )
    except Exception:  # the database is gone: the error being raised matters more
        logger.warning("Could not end the attempt at chunk %s.", chunk.pk, exc_info=True)


def used_up(chunk: ImportChunk) -> bool:
    """True if workers died on ``chunk`` as many times as ``DATA_EXCHANGE_MAX_CHUNK_ATTEMPTS``."""
    return chunk.unfinished_attempts >= app_settings.MAX_CHUNK_ATTEMPTS


def rows_label(chunk: ImportChunk) -> str:
    """The chunk as a user finds it in the file: "Chunk 3 (rows 302–401)"."""
    return _("Chunk {index} (rows {first}–{last})").format(
        index=chunk.index, first=chunk.first_row, last=chunk.first_row + chunk.row_count - 1
    )


def store_errors(
    job: ImportJob, chunk: ImportChunk | None, phase: Phase, errors: list[CellError]
) -> None:
    """Store row errors found in ``phase``, on ``chunk`` (``None``: on the whole job)."""
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
    """Note a fault on a chunk for good: it stays pending (a resume runs it again), and counts
    as settled for the job's reducer."""
    now = timezone.now()
    ImportChunk.objects.filter(pk=chunk_id).update(
        last_error=message[:2000], updated_at=now, settled_at=now
    )

"""The one module that moves a job between states.

Every move is a conditional update in the database (``UPDATE … WHERE state = <expected>``) in a
transaction that locks the job row, so two workers can never both move a job, and every move
that happens leaves one :class:`~data_exchange_tool.models.JobEvent`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ..exceptions import TransitionRefused
from ..models import ImportJob, JobEvent
from ..states import ALLOWED_MOVES, JobState

logger = logging.getLogger(__name__)


def move(
    job_id: Any,
    to: JobState,
    *,
    expected: Iterable[JobState] | None = None,
    at_fence: int | None = None,
    message: str = "",
    **fields: Any,
) -> bool:
    """Move the job to ``to`` if its state is one of ``expected``; True if this call moved it.

    ``expected`` defaults to every state allowed to move to ``to``. With ``at_fence``, the
    job moves only if that is still its fence (the import attempt the caller works for).
    ``fields`` are saved in the same update. A move is progress: it sets ``progress_at``.
    """
    sources = frozenset(expected) if expected is not None else _sources_of(to)
    for source in sources:
        if to not in ALLOWED_MOVES[source]:
            raise TransitionRefused(f"A job cannot move from {source} to {to}.")
    with transaction.atomic():
        found = (
            ImportJob.objects.select_for_update()
            .filter(pk=job_id)
            .values_list("state", "fence")
            .first()
        )
        current, current_fence = found if found is not None else (None, None)
        if current not in sources or (at_fence is not None and current_fence != at_fence):
            return False
        now = timezone.now()
        fields = {"progress_at": now, **fields}
        moved = ImportJob.objects.filter(pk=job_id, state=current).update(
            state=to, updated_at=now, **fields
        )
        if moved:
            JobEvent.objects.create(job_id=job_id, from_state=current, to_state=to, message=message)
            logger.info("Import job %s: %s -> %s %s", job_id, current, to, message)
        return bool(moved)


def _sources_of(target: JobState) -> frozenset[JobState]:
    return frozenset(s for s, targets in ALLOWED_MOVES.items() if target in targets)


def hold_for_chunk(job_id: Any, fence: int) -> bool:
    """Inside a chunk's transaction: True if the job still holds the import under ``fence``.

    On PostgreSQL the job row is locked ``FOR SHARE`` until the chunk commits, so a move of the
    job (which locks it ``FOR UPDATE``) waits for chunks in flight, and a chunk that starts after
    the move sees it. SQLite serialises writers, so a plain read is enough there.
    """
    table = ImportJob._meta.db_table
    share = " FOR SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT state, fence FROM {table} WHERE id = %s{share}", [_db_id(job_id)])
        row = cursor.fetchone()
    return row is not None and row[0] == JobState.IMPORT_IN_PROGRESS and row[1] == fence


def _db_id(job_id: Any) -> Any:
    field = ImportJob._meta.pk
    return field.get_db_prep_value(field.to_python(job_id), connection)

"""The one module that moves a job between states, and the rules that allow each move.

The guards (:func:`can_confirm`, :func:`can_resume`, :func:`can_cancel`, :func:`can_delete`)
say whether a move is allowed now, as a :class:`Verdict`; the services enforce them and the
admin shows its buttons from them. :func:`fail` is the one way a job fails.

Every move is a conditional update in the database (``UPDATE … WHERE state = <expected>``) in a
transaction that locks the job row, so two workers can never both move a job, and every move
that happens leaves one :class:`~data_exchange_tool.models.JobEvent`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..exceptions import ImportLockHeld, TransitionRefused
from ..models import ImportJob, JobEvent
from ..states import ALLOWED_MOVES, RUNNING_STATES, FailureKind, JobState, Phase
from . import announce, retention

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
            announce.after_move(job_id, current, to)
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


_FAILED = {
    Phase.PREVIEW: (JobState.PREVIEW_FAILED, JobState.CREATED, "preview_finished_at"),
    Phase.IMPORT: (JobState.IMPORT_FAILED, JobState.IMPORT_IN_PROGRESS, "import_finished_at"),
}


def fail(
    job_id: Any,
    phase: Phase,
    reason: str,
    kind: FailureKind | None,
    *,
    expected: JobState | None = None,
    at_fence: int | None = None,
    summary: str = "",
    **fields: Any,
) -> bool:
    """Fail the job's ``phase`` with a reason the user can act on; True if this call moved it.

    The job must be in ``expected``, by default the phase's running state (CREATED, or
    IMPORT_IN_PROGRESS under ``at_fence`` when given); failing a running phase ends it now.
    ``kind`` says whether the file (data) or a fault (resume) failed it, ``None`` neither
    (cancelled). ``summary`` is what the job's page shows, by default ``reason``; ``fields``
    are saved in the same update.
    """
    failed, running, finished_at = _FAILED[phase]
    source = expected or running
    if source == running:
        fields = {finished_at: timezone.now(), **fields}
    return move(
        job_id,
        failed,
        expected=[source],
        at_fence=at_fence,
        message=reason,
        error_summary=summary or reason,
        failure_kind=kind or "",
        **fields,
    )


@dataclass(frozen=True)
class Verdict:
    """What a guard says of a move now: true if it is allowed, else the refusal to raise.

    ``offered`` is False when the job's state rules the move out, whatever else holds (the
    admin shows no button for it).
    """

    offered: bool
    refusal: TransitionRefused | None = None

    def __bool__(self) -> bool:
        return self.refusal is None

    @property
    def reason(self) -> str:
        """Why the move is refused; empty when it is allowed."""
        return "" if self.refusal is None else str(self.refusal)

    def enforce(self) -> None:
        """Raise the refusal, if any."""
        if self.refusal is not None:
            raise self.refusal


def _verdict(offered: bool, refusal: str | TransitionRefused | None = None) -> Verdict:
    if isinstance(refusal, str):
        refusal = TransitionRefused(refusal)
    return Verdict(offered, refusal)


def can_confirm(job: ImportJob) -> Verdict:
    """Whether Confirm Import may start the job's import now (another job of the same target
    importing: an :class:`ImportLockHeld` refusal)."""
    offered = job.state == JobState.PREVIEW_SUCCEEDED
    if job.files_removed_at is not None:
        return _verdict(offered, retention.files_removed_refusal())
    if not offered:
        return _verdict(
            offered,
            f"The job is {job.get_state_display().lower()}; only a job whose preview succeeded "
            "can be imported.",
        )
    if job.invalid_rows:
        return _verdict(
            offered,
            f"The preview found {job.invalid_rows:,} row(s) with errors; fix the file and "
            "upload it again.",
        )
    other = importing_job(job)
    if other is not None:
        return _verdict(offered, lock_held(job, other))
    return _verdict(offered)


def can_resume(job: ImportJob) -> Verdict:
    """Whether Resume may run the unfinished chunks of the job's failed import now."""
    offered = job.state == JobState.IMPORT_FAILED and job.failure_kind == FailureKind.FAULT
    if job.files_removed_at is not None:
        return _verdict(offered, retention.files_removed_refusal())
    if not offered:
        return _verdict(
            offered, "Only an import that failed by a fault (not by bad data) can be resumed."
        )
    return _verdict(offered)


def can_cancel(job: ImportJob) -> Verdict:
    """Whether the job's preview or import runs, so that it can be cancelled."""
    if job.state in RUNNING_STATES:
        return _verdict(True)
    return _verdict(
        False,
        _("Only a running preview or import can be cancelled; the job is %(state)s.")
        % {"state": job.get_state_display().lower()},
    )


def can_delete(job: ImportJob) -> Verdict:
    """Whether the job may be deleted: not while its preview or import runs."""
    if job.state not in RUNNING_STATES:
        return _verdict(True)
    return _verdict(
        False, _("A job cannot be deleted while its preview or import runs; cancel it first.")
    )


def importing_job(job: ImportJob) -> Any:
    """The id of another job of the same target that is importing, as committed."""
    others = ImportJob.objects.filter(
        content_type_id=job.content_type_id, state=JobState.IMPORT_IN_PROGRESS
    ).exclude(pk=job.pk)
    return others.values_list("pk", flat=True).first()


def lock_held(job: ImportJob, other: Any) -> ImportLockHeld:
    """The refusal of an import while ``other`` (a job id, or ``None`` if unknown) holds the
    target's lock."""
    model = job.content_type.model_class()
    label = model._meta.verbose_name_plural if model else job.content_type
    if other is None:
        return ImportLockHeld(
            f"Another import into {label} is starting or ending; try again in a moment."
        )
    return ImportLockHeld(
        f"Another import into {label} is running (job {other}); wait until it finishes."
    )

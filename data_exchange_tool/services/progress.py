"""How far a running preview or import has got, from the chunks that have settled.

Counts come from the chunk ledger (a chunk's state and counts commit with its work), so they are
right at any moment and never count a re-sent chunk twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from django.db.models import Count, Q, Sum
from django.utils import timezone

from ..models import ImportJob
from ..states import RUNNING_STATES, ChunkState, JobState

__all__ = ["Progress", "job_progress"]


@dataclass(frozen=True)
class Progress:
    """Rows and chunks done of total in the job's running phase (or its last one)."""

    state: str
    phase: str
    running: bool
    rows_done: int
    rows_total: int | None
    chunks_done: int
    chunks_total: int | None
    rows_per_second: float | None
    seconds_left: float | None

    @property
    def percent(self) -> float | None:
        if not self.rows_total:
            return None
        return min(100.0, 100.0 * self.rows_done / self.rows_total)

    def as_dict(self) -> dict:
        return {**asdict(self), "percent": self.percent}


def job_progress(job: ImportJob, now: datetime | None = None) -> Progress:
    """The progress of ``job``'s current phase: the preview while it is created, else the import."""
    importing = job.state not in (JobState.CREATED, JobState.PREVIEW_FAILED) and bool(
        job.import_started_at
    )
    state_field = "import_state" if importing else "preview_state"
    started = job.import_started_at if importing else job.preview_started_at
    settled = ~Q(**{state_field: ChunkState.PENDING})
    since = Q(settled_at__gte=started) if started else Q(pk__in=[])
    totals = job.chunks.aggregate(
        chunks_done=Count("pk", filter=settled),
        rows_done=Sum("row_count", filter=settled),
        rows_recent=Sum("row_count", filter=settled & since),
    )
    running = job.state in RUNNING_STATES
    # both stay None while the split is still storing chunks: the totals are not known yet
    rows_total = job.total_rows
    chunks_total = job.chunk_count
    rows_done = totals["rows_done"] or 0
    rate = _rate(totals["rows_recent"] or 0, started, now or timezone.now()) if running else None
    left = None
    if rate and rows_total is not None:
        left = max(0.0, (rows_total - rows_done) / rate)
    return Progress(
        state=job.state,
        phase="import" if importing else "preview",
        running=running,
        rows_done=rows_done,
        rows_total=rows_total,
        chunks_done=totals["chunks_done"],
        chunks_total=chunks_total,
        rows_per_second=rate,
        seconds_left=left,
    )


def _rate(rows: int, started: datetime | None, now: datetime) -> float | None:
    if not rows or started is None:
        return None
    elapsed = (now - started).total_seconds()
    return rows / elapsed if elapsed > 0 else None

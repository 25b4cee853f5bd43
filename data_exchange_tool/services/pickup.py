"""Whether a job's first task has waited too long for a worker (read only)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from ..conf import app_settings
from ..models import ImportJob
from ..states import ChunkState, JobState


def pickup_warning(job: ImportJob, now: datetime | None = None) -> str:
    """A warning when no worker has started the job's preview or import within
    ``DATA_EXCHANGE_PICKUP_WARNING_AFTER`` seconds; empty otherwise."""
    now = now or timezone.now()
    waiting_since = _waiting_since(job)
    if waiting_since is None:
        return ""
    waited = (now - waiting_since).total_seconds()
    if waited < app_settings.PICKUP_WARNING_AFTER:
        return ""
    if job.state == JobState.CREATED:
        phase, queue = _("preview"), app_settings.PREVIEW_QUEUE
    else:
        phase, queue = _("import"), app_settings.IMPORT_QUEUE
    return _(
        "No worker has started this job's %(phase)s yet after %(waited)s: check that a Celery "
        "worker consumes queue “%(queue)s” and that its app finds the library's tasks "
        "(app.autodiscover_tasks())."
    ) % {"phase": phase, "waited": _duration(waited), "queue": queue}


def _waiting_since(job: ImportJob) -> datetime | None:
    """When the job's first task was sent, if no worker has taken it yet."""
    if job.state == JobState.CREATED:
        taken = job.preview_started_at is not None or job.chunks.exists()
        return None if taken else job.created_at
    if job.state == JobState.IMPORT_IN_PROGRESS:
        chunks = job.chunks.all()
        taken = (
            chunks.filter(import_fence=job.fence).exists()
            or chunks.filter(import_state=ChunkState.PENDING, import_attempts__gt=0).exists()
        )
        return None if taken else job.import_started_at
    return None


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes >= 1:
        return ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}
    whole = int(seconds)
    return ngettext("%(n)d second", "%(n)d seconds", whole) % {"n": whole}

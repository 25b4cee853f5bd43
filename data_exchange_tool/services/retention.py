"""Retention: remove the stored files of jobs that finished longer ago than they are kept.

A job is finished when no work of it runs (its preview or import ended). Once its last change is
older than ``DATA_EXCHANGE_KEEP_FILES_FOR`` seconds, its source and chunks are deleted and
``files_removed_at`` is set; the job keeps its counts, row errors and history. The removal and
the mark happen under the job's row lock, the lock every state move takes, so a Confirm or a
Resume either starts first (and the job is no longer finished) or sees the mark and is refused.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..conf import app_settings
from ..models import ImportJob
from ..states import FINISHED_STATES
from ..storage import import_storage

logger = logging.getLogger(__name__)

BATCH = 500


def remove_expired_files(
    now: datetime | None = None, keep_for: float | None = None, batch: int = BATCH
) -> int:
    """Remove the files of up to ``batch`` expired jobs; the number of jobs cleaned.

    ``keep_for`` defaults to ``DATA_EXCHANGE_KEEP_FILES_FOR``; None there keeps files forever.
    A job whose files cannot be deleted now (storage down) is logged and tried on the next pass.
    """
    keep_for = app_settings.KEEP_FILES_FOR if keep_for is None else keep_for
    if keep_for is None:
        return 0
    cutoff = (now or timezone.now()) - timedelta(seconds=keep_for)
    expired = _expired(cutoff).order_by("updated_at").values_list("pk", flat=True)[:batch]
    removed = 0
    for job_id in list(expired):
        try:
            removed += remove_job_files(job_id, cutoff)
        except Exception:
            logger.exception("The stored files of import job %s could not be removed.", job_id)
    return removed


def _expired(cutoff: datetime) -> Any:
    return ImportJob.objects.filter(
        state__in=FINISHED_STATES, updated_at__lt=cutoff, files_removed_at__isnull=True
    )


def remove_job_files(job_id: Any, cutoff: datetime) -> bool:
    """Delete one expired job's files and mark it, under its row lock; False if it is not
    (or no longer) expired."""
    with transaction.atomic():
        job = _expired(cutoff).select_for_update().filter(pk=job_id).first()
        if job is None:
            return False
        import_storage().delete_job_files(job.pk, job.source_key)
        ImportJob.objects.filter(pk=job.pk).update(files_removed_at=timezone.now())
    logger.info("Import job %s: stored files removed after the retention time.", job_id)
    return True


def files_removed_refusal() -> str:
    """Why a job whose files were removed cannot be confirmed or resumed."""
    return _(
        "The stored file of this job was removed (DATA_EXCHANGE_KEEP_FILES_FOR); upload the "
        "file again to import it."
    )

"""Send :mod:`data_exchange_tool.signals` once a phase-ending move has committed."""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.db import transaction

from ..models import ImportJob
from ..signals import import_finished, preview_finished
from ..states import JobState

logger = logging.getLogger(__name__)

COUNT_FIELDS = ("total_rows", "valid_rows", "invalid_rows", "imported_rows")
_ENDINGS = {
    (JobState.CREATED, JobState.PREVIEW_SUCCEEDED): preview_finished,
    (JobState.CREATED, JobState.PREVIEW_FAILED): preview_finished,
    (JobState.IMPORT_IN_PROGRESS, JobState.IMPORT_SUCCEEDED): import_finished,
    (JobState.IMPORT_IN_PROGRESS, JobState.IMPORT_FAILED): import_finished,
}


def after_move(job_id: Any, source: str, target: str) -> None:
    """Queue the signal of a move that ends a phase, to be sent after the commit."""
    signal = _ENDINGS.get((JobState(source), JobState(target)))
    if signal is not None:
        transaction.on_commit(lambda: _send(signal, job_id, target), robust=True)


def _send(signal: Any, job_id: Any, state: str) -> None:
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None:
        return
    sender = _importer_model(job.importer)
    counts = {name: getattr(job, name) for name in COUNT_FIELDS}
    for receiver, result in signal.send_robust(sender, job=job, state=state, counts=counts):
        if isinstance(result, Exception):
            logger.error(
                "Import job %s: receiver %r of %s failed",
                job_id,
                receiver,
                "import_finished" if signal is import_finished else "preview_finished",
                exc_info=result,
            )


def _importer_model(label: str) -> type[ImportJob]:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return ImportJob

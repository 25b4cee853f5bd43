"""Job and chunk states, and the table of allowed job moves.

::

    CREATED ──▶ PREVIEW_SUCCEEDED ──▶ IMPORT_IN_PROGRESS ──▶ IMPORT_SUCCEEDED
       │               │                                      │
       ▼               ▼                                      ▼
    PREVIEW_FAILED  PREVIEW_FAILED                        IMPORT_FAILED ──▶ IMPORT_IN_PROGRESS
                                                                             (resume)

Only :mod:`data_exchange_tool.services.transitions` moves a job between states.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class JobState(models.TextChoices):
    """Where an import job stands."""

    CREATED = "CREATED", _("Created (preview running)")
    PREVIEW_SUCCEEDED = "PREVIEW_SUCCEEDED", _("Preview succeeded")
    PREVIEW_FAILED = "PREVIEW_FAILED", _("Preview failed")
    IMPORT_IN_PROGRESS = "IMPORT_IN_PROGRESS", _("Import in progress")
    IMPORT_SUCCEEDED = "IMPORT_SUCCEEDED", _("Import succeeded")
    IMPORT_FAILED = "IMPORT_FAILED", _("Import failed")


TERMINAL_STATES = frozenset(
    {JobState.PREVIEW_FAILED, JobState.IMPORT_SUCCEEDED, JobState.IMPORT_FAILED}
)

RUNNING_STATES = frozenset({JobState.CREATED, JobState.IMPORT_IN_PROGRESS})
"""A preview or an import runs: the job cannot be deleted, it can be cancelled."""

FINISHED_STATES = frozenset(
    {
        JobState.PREVIEW_SUCCEEDED,
        JobState.PREVIEW_FAILED,
        JobState.IMPORT_SUCCEEDED,
        JobState.IMPORT_FAILED,
    }
)
"""No work of the job runs: its stored files may be removed after the retention time."""

FAILED_STATES = frozenset({JobState.PREVIEW_FAILED, JobState.IMPORT_FAILED})

IMPORT_ENDED_STATES = frozenset({JobState.IMPORT_SUCCEEDED, JobState.IMPORT_FAILED})
"""The import ran and ended: its lock must be released."""

ALLOWED_MOVES: dict[JobState, frozenset[JobState]] = {
    JobState.CREATED: frozenset({JobState.PREVIEW_SUCCEEDED, JobState.PREVIEW_FAILED}),
    JobState.PREVIEW_SUCCEEDED: frozenset({JobState.IMPORT_IN_PROGRESS, JobState.PREVIEW_FAILED}),
    JobState.IMPORT_IN_PROGRESS: frozenset({JobState.IMPORT_SUCCEEDED, JobState.IMPORT_FAILED}),
    JobState.IMPORT_FAILED: frozenset({JobState.IMPORT_IN_PROGRESS}),
    JobState.PREVIEW_FAILED: frozenset(),
    JobState.IMPORT_SUCCEEDED: frozenset(),
}


class Phase(models.TextChoices):
    """The two passes over a file's rows."""

    PREVIEW = "preview", _("Preview")
    IMPORT = "import", _("Import")


class ChunkState(models.TextChoices):
    """State of one chunk in one phase."""

    PENDING = "PENDING", _("Pending")
    DONE = "DONE", _("Done")
    FAILED = "FAILED", _("Failed")


class FailureKind(models.TextChoices):
    """Why a job failed: the data (fix the file) or a fault (resume)."""

    DATA = "data", _("Bad data")
    FAULT = "fault", _("Fault (can be resumed)")

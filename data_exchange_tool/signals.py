"""Signals sent when a job's preview or import ends.

Each is sent once per ending, after the commit that ends the phase (never from a worker's retry,
a duplicate reducer or a rolled-back transaction), with::

    sender   the importer proxy model (e.g. ``CustomerImportJob``), or ``ImportJob``
    job      the :class:`~data_exchange_tool.models.ImportJob`, as stored after the commit
    state    its new state (a :class:`~data_exchange_tool.states.JobState` value)
    counts   ``{"total_rows": …, "valid_rows": …, "invalid_rows": …, "imported_rows": …}``

A receiver runs in the process that ended the phase (a Celery worker, or the web process for a
cancel); an exception it raises is logged and does not change the job.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["import_finished", "preview_finished"]

preview_finished = Signal()
"""The preview ended: PREVIEW_SUCCEEDED or PREVIEW_FAILED."""

import_finished = Signal()
"""An import attempt ended: IMPORT_SUCCEEDED or IMPORT_FAILED (a resumed import ends again)."""

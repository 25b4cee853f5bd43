"""Fault injection for the library's own tests; not a public API, and a no-op in production.

``DATA_EXCHANGE_FAULT_HOOKS`` (for tests only) names an object (dotted path) with any of these
methods, each called with keyword arguments at a point of the pipeline where a test may crash a
worker, block it or change the database: ``after_chunk_marked(job_id, chunk_index, phase)``,
``before_chunk_commit(job_id, chunk_index, phase)``, ``before_finalize(job_id, phase)``,
``after_chunk_stored(job_id, chunk_index, phase)`` (the split stored a chunk, before it sends its
validation). Unset, :func:`fire` returns at once. Projects should not rely on it: user hooks
are Django signals.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from .conf import app_settings


def fire(point: str, **kwargs: Any) -> None:
    """Call the test's fault hook for ``point``, if a test set one."""
    path = app_settings.FAULT_HOOKS
    if not path:
        return
    hook = getattr(import_string(path), point, None)
    if hook is not None:
        hook(**kwargs)

"""Fault-injection hooks for tests (``DATA_EXCHANGE_FAULT_HOOKS``). No-ops in production.

The setting names an object (dotted path) with any of these methods, each called with keyword
arguments: ``after_chunk_marked(job_id, chunk_index, phase)``, ``before_chunk_commit(job_id,
chunk_index, phase)``, ``before_finalize(job_id, phase)``, ``after_chunk_stored(job_id,
chunk_index, phase)`` (the split stored a chunk, before it sends its validation).
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

from .conf import app_settings


def fire(name: str, **kwargs: Any) -> None:
    path = app_settings.FAULT_HOOKS
    if not path:
        return
    hook = getattr(import_string(path), name, None)
    if hook is not None:
        hook(**kwargs)

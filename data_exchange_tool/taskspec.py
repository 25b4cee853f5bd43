"""The boundary with the Celery tasks: their names, queues, time limits and retry policy.

Both sides read this module and nothing else about the other: the app sends tasks by these
names through :mod:`.dispatch`, and :mod:`workflows.tasks` registers them under the same names
with these options. It imports neither Celery nor ``workflows``.

A task retries a fault that may pass (a lost database or broker connection) up to
:data:`MAX_RETRIES` times, waiting :func:`retry_countdown` seconds; a worker that dies is counted
apart, against ``DATA_EXCHANGE_MAX_CHUNK_ATTEMPTS`` (see :mod:`.services`).
"""

from __future__ import annotations

from typing import Any

from django.db import InterfaceError, OperationalError

from .conf import app_settings

RUN_PREVIEW = "workflows.run_preview"
VALIDATE_CHUNK = "workflows.validate_chunk"
FINALIZE_PREVIEW = "workflows.finalize_preview"
RUN_IMPORT = "workflows.run_import"
IMPORT_CHUNK = "workflows.import_chunk"
FINALIZE_IMPORT = "workflows.finalize_import"
RECONCILE = "workflows.reconcile"  # scheduled by the project's beat, on its own queue

PREVIEW_TASKS = frozenset({RUN_PREVIEW, VALIDATE_CHUNK, FINALIZE_PREVIEW})
IMPORT_TASKS = frozenset({RUN_IMPORT, IMPORT_CHUNK, FINALIZE_IMPORT})
CHUNK_TASKS = frozenset({VALIDATE_CHUNK, IMPORT_CHUNK})

HARD_LIMIT_EXTRA = 30  # seconds the hard time limit of a chunk task adds to the soft one

RETRYABLE = (OperationalError, InterfaceError, ConnectionError, TimeoutError, OSError)
MAX_RETRIES = 5
MAX_COUNTDOWN = 30  # seconds; the wait doubles from 1 s up to this

# Options of every task of a job: late acks, requeued when the worker process dies.
TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": MAX_RETRIES,
}
RECONCILE_OPTIONS: dict[str, Any] = {"acks_late": True}


def queue(task_name: str) -> str:
    """The queue a job's task goes to: ``DATA_EXCHANGE_PREVIEW_QUEUE`` or ``..._IMPORT_QUEUE``."""
    if task_name in PREVIEW_TASKS:
        return app_settings.PREVIEW_QUEUE
    if task_name in IMPORT_TASKS:
        return app_settings.IMPORT_QUEUE
    raise ValueError(f"{task_name!r} is not a task of a job.")


def chunk_time_limits() -> dict[str, int]:
    """Soft and hard time limits of one chunk task, in seconds."""
    soft = int(app_settings.CHUNK_TIME_LIMIT)
    return {"soft_time_limit": soft, "time_limit": soft + HARD_LIMIT_EXTRA}


def time_limits(task_name: str) -> dict[str, int]:
    """The time limits a task is sent with: a chunk task's, none for the others."""
    return chunk_time_limits() if task_name in CHUNK_TASKS else {}


def send_options(task_name: str) -> dict[str, Any]:
    """Queue and time limits of a job's task, as ``apply_async`` or a signature take them."""
    return {"queue": queue(task_name), **time_limits(task_name)}


def retry_countdown(exc: BaseException, retries: int) -> int | None:
    """Seconds to wait before retrying after ``exc``, or ``None``: the fault will not pass."""
    if isinstance(exc, RETRYABLE) and retries < MAX_RETRIES:
        return min(2**retries, MAX_COUNTDOWN)
    return None

"""Start a workflow by Celery task name, after the database transaction commits.

The app never imports ``workflows``; it names its tasks. If the task is registered in the
current Celery app (a worker, or a web process that imported it) it is applied directly, which
honours ``task_always_eager``; otherwise it is sent by name. Chunk tasks are sent with the
chunk time limits (``DATA_EXCHANGE_CHUNK_TIME_LIMIT``).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction

from .conf import app_settings

logger = logging.getLogger(__name__)

RUN_PREVIEW = "workflows.run_preview"
RUN_IMPORT = "workflows.run_import"
VALIDATE_CHUNK = "workflows.validate_chunk"
IMPORT_CHUNK = "workflows.import_chunk"
FINALIZE_PREVIEW = "workflows.finalize_preview"
FINALIZE_IMPORT = "workflows.finalize_import"
CHUNK_TASKS = frozenset({VALIDATE_CHUNK, IMPORT_CHUNK})
HARD_LIMIT_EXTRA = 30  # seconds the hard time limit of a chunk task adds to the soft one


def chunk_time_limits() -> dict[str, int]:
    """Soft and hard time limits of one chunk task, in seconds."""
    soft = int(app_settings.CHUNK_TIME_LIMIT)
    return {"soft_time_limit": soft, "time_limit": soft + HARD_LIMIT_EXTRA}


def _options(task_name: str) -> dict[str, int]:
    return chunk_time_limits() if task_name in CHUNK_TASKS else {}


def send(task_name: str, args: list[Any], queue: str) -> None:
    """Send a task now. Errors (broker down) are logged; the reconcile step re-sends later."""
    from celery import current_app

    try:
        task = current_app.tasks.get(task_name)
        if task is None and current_app.conf.task_always_eager:
            current_app.loader.import_default_modules()  # autodiscovered tasks, as a worker does
            task = current_app.tasks.get(task_name)
        options = _options(task_name)
        if task is not None:
            task.apply_async(args=args, queue=queue, **options)
        else:
            current_app.send_task(task_name, args=args, queue=queue, **options)
    except Exception:
        logger.exception("Could not send %s%r to %s; reconcile will retry.", task_name, args, queue)


def send_on_commit(task_name: str, args: list[Any], queue: str) -> None:
    """Send a task once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(partial(send, task_name, args, queue))

"""Start a workflow by Celery task name, after the database transaction commits.

The services name their tasks (see :mod:`.taskspec`) rather than import ``workflows``. If the
task is registered in the current Celery app (a worker, or a web process that imported it) it
is applied directly, which honours ``task_always_eager``; otherwise it is sent by name. Queues
and time limits are those of :mod:`.taskspec`.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import transaction

from .taskspec import time_limits

__all__ = ["send", "send_on_commit"]

logger = logging.getLogger(__name__)


def send(task_name: str, args: list[Any], queue: str) -> None:
    """Send a task now. Errors (broker down) are logged; the reconcile step re-sends later."""
    from celery import current_app

    try:
        task = current_app.tasks.get(task_name)
        if task is None and current_app.conf.task_always_eager:
            current_app.loader.import_default_modules()  # autodiscovered tasks, as a worker does
            task = current_app.tasks.get(task_name)
        options = time_limits(task_name)
        if task is not None:
            task.apply_async(args=args, queue=queue, **options)
        else:
            current_app.send_task(task_name, args=args, queue=queue, **options)
    except Exception:
        logger.exception("Could not send %s%r to %s; reconcile will retry.", task_name, args, queue)


def send_on_commit(task_name: str, args: list[Any], queue: str) -> None:
    """Send a task once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(partial(send, task_name, args, queue))

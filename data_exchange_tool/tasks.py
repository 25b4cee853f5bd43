"""Where Celery's ``app.autodiscover_tasks()`` finds the library's tasks.

Autodiscovery imports ``<app>.tasks`` for every installed app, so a project that lists only
``data_exchange_tool`` in ``INSTALLED_APPS`` still registers the named tasks of
:mod:`workflows.tasks` in its workers. Nothing else in the app imports ``workflows``: Django
never loads this module, only a Celery app that looks for tasks does.
"""

from workflows import tasks as workflow_tasks

__all__ = ["workflow_tasks"]

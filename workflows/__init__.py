"""The Celery canvas of django-data-exchange-tool: named tasks, the import chord, reducers."""

"""The Celery canvas of django-data-exchange-tool: named tasks, chords and their reducers."""

"""``manage.py data_exchange_import IMPORTER FILE``: start an import job from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from data_exchange_tool import registry, services
from data_exchange_tool.exceptions import DataExchangeError
from data_exchange_tool.models import ImportJob
from data_exchange_tool.states import FAILED_STATES, JobState


class Command(BaseCommand):
    help = "Upload a file for an importer and run its preview; with --confirm, import it too."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("importer", help="Importer label, e.g. myapp.StockRecordImportJob")
        parser.add_argument("path", type=Path)
        parser.add_argument("--encoding", default="")
        parser.add_argument("--delimiter", default="")
        parser.add_argument("--sheet", default="")
        parser.add_argument(
            "--confirm", action="store_true", help="Import if the preview is clean."
        )
        parser.add_argument(
            "--timeout", type=float, default=3600, help="Seconds to wait per phase."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        importer = options["importer"]
        if importer not in registry.all_importers():
            known = ", ".join(registry.all_importers()) or "none"
            raise CommandError(f"Unknown importer {importer!r}. Registered: {known}.")
        try:
            with options["path"].open("rb") as fh:
                job = services.create_job(
                    importer,
                    fh,
                    name=options["path"].name,
                    encoding=options["encoding"],
                    delimiter=options["delimiter"],
                    sheet_name=options["sheet"],
                )
        except (OSError, DataExchangeError) as exc:
            raise CommandError(str(exc)) from exc
        job = self._wait(job, {JobState.CREATED}, options["timeout"])
        self._report(job)
        if options["confirm"] and job.state == JobState.PREVIEW_SUCCEEDED:
            try:
                services.confirm_import(job.pk)
            except DataExchangeError as exc:
                raise CommandError(str(exc)) from exc
            job = self._wait(job, {JobState.IMPORT_IN_PROGRESS}, options["timeout"])
            self._report(job)
        if job.state in FAILED_STATES:
            raise CommandError(job.error_summary or job.get_state_display())

    def _wait(self, job: ImportJob, running: set[str], timeout: float) -> ImportJob:
        deadline = time.monotonic() + timeout
        job.refresh_from_db()
        while job.state in running and time.monotonic() < deadline:
            time.sleep(0.5)
            job.refresh_from_db()
        return job

    def _report(self, job: ImportJob) -> None:
        self.stdout.write(
            f"job {job.pk}: {job.state}; rows {job.total_rows}, valid {job.valid_rows}, "
            f"invalid {job.invalid_rows}, imported {job.imported_rows}"
        )
        if job.error_summary:
            self.stdout.write(f"  {job.error_summary}")
        for error in job.row_errors.all()[:10]:
            self.stdout.write(f"  row {error.row_number} {error.column}: {error.message}")

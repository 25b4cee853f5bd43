"""``manage.py data_exchange_cleanup``: remove the stored files of long-finished import jobs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from data_exchange_tool.services.retention import BATCH, remove_expired_files


class Command(BaseCommand):
    help = (
        "Remove the stored source and chunks of import jobs that finished more than "
        "DATA_EXCHANGE_KEEP_FILES_FOR seconds ago; their counts and row errors stay. "
        "Reconcile does the same on every pass."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--keep-for",
            type=float,
            default=None,
            help="Seconds to keep files for, instead of DATA_EXCHANGE_KEEP_FILES_FOR.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        while removed := remove_expired_files(keep_for=options["keep_for"]):
            total += removed
            if removed < BATCH:
                break
        self.stdout.write(f"files removed: {total} job(s)")

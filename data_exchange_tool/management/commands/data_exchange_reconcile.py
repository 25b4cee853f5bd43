"""``manage.py data_exchange_reconcile``: finish, re-send or fail stalled import jobs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from data_exchange_tool.services.reconcile import reconcile


class Command(BaseCommand):
    help = (
        "Find import jobs with no progress (work finished, never a re-send) for "
        "DATA_EXCHANGE_STALE_AFTER seconds: finalise those whose chunks are all settled, send "
        "missing work again, fail those idle for DATA_EXCHANGE_GIVE_UP_AFTER. Chunks running "
        "past their hard time limit are sent again at once. Safe to run at any time, and twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stale-after", type=float, default=None)
        parser.add_argument("--give-up-after", type=float, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        done = reconcile(stale_after=options["stale_after"], give_up_after=options["give_up_after"])
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in done.items()))

"""Row errors at a glance: grouped by column and message, and invalid rows per column.

Both are aggregate queries over the job's row errors, so a job with a million errors is
summarised without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Min

from ..models import ImportJob

__all__ = ["ColumnBar", "ErrorGroup", "error_groups", "invalid_rows_by_column"]

GROUPS_SHOWN = 10
FIRST_ROWS_SHOWN = 3
COLUMNS_SHOWN = 12


@dataclass(frozen=True)
class ErrorGroup:
    """One column and message, how many rows have it and the first of them."""

    column: str
    message: str
    count: int
    first_rows: list[int]


@dataclass(frozen=True)
class ColumnBar:
    """Invalid rows in one column, and their share of the largest column (for a bar)."""

    column: str
    rows: int
    percent: int


def error_groups(job: ImportJob, limit: int = GROUPS_SHOWN) -> list[ErrorGroup]:
    """The ``limit`` largest groups of the job's errors by column and message."""
    grouped = (
        job.row_errors.values("column", "message")
        .annotate(count=Count("id"), first=Min("row_number"))
        .order_by("-count", "first")[:limit]
    )
    groups = []
    for group in grouped:
        first_rows = list(
            job.row_errors.filter(column=group["column"], message=group["message"])
            .order_by("row_number")
            .values_list("row_number", flat=True)
            .distinct()[:FIRST_ROWS_SHOWN]
        )
        groups.append(ErrorGroup(group["column"], group["message"], group["count"], first_rows))
    return groups


def invalid_rows_by_column(job: ImportJob, limit: int = COLUMNS_SHOWN) -> list[ColumnBar]:
    """Rows with an error in each column, most first (errors of no column as ``""``)."""
    counted = list(
        job.row_errors.values("column")
        .annotate(rows=Count("row_number", distinct=True))
        .order_by("-rows", "column")[:limit]
    )
    if not counted:
        return []
    largest = counted[0]["rows"]
    return [ColumnBar(c["column"], c["rows"], round(100 * c["rows"] / largest)) for c in counted]

"""Which row of a chunk the database refuses, found after the chunk failed."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, models, router, transaction
from django.utils.translation import gettext as _

from ..options import ImporterOptions
from .base import Records, RowProblem, check_deferred, db_message, db_text, is_data_error
from .bulk import bulk_write


class _Undo(Exception):
    """Rolls back a probe write."""


def blame(
    importer: ImporterOptions, model: type[models.Model], rows: Records, error: Exception
) -> RowProblem:
    """The first row (in file order) that fails, written after the rows before it, inside
    savepoints rolled back; it names the earlier row it conflicts with when it passes alone.
    Probes halve the rows each time: a few writes of the chunk, only when it failed."""

    def fails(batch: Records) -> Exception | None:
        try:
            db = router.db_for_write(model)
            with transaction.atomic(using=db):
                bulk_write(importer, model, batch)
                check_deferred(db)
                raise _Undo
        except _Undo:
            return None
        except (DatabaseError, DjangoValidationError) as exc:
            if is_data_error(exc):
                return exc
            raise

    end = _shortest_failing(fails, rows, lambda n: rows[:n])
    if end is None:
        first, last = rows[0][0], rows[-1][0]
        message = _(
            "The database refused rows %(first)s to %(last)s of this chunk together: %(error)s"
        ) % {"first": first, "last": last, "error": db_text(error)}
        return RowProblem(first, "", "database", message)
    row = rows[end - 1]
    alone = fails([row])
    if alone is not None:
        return RowProblem(row[0], "", "database", db_message(alone))
    before = _shortest_failing(fails, rows[: end - 1], lambda n: [*rows[:n], row])
    if before is None:
        return RowProblem(row[0], "", "database", db_message(error))
    cause = fails([rows[before - 1], row]) or error
    conflict = _("It conflicts with row %(row)s of the file.") % {"row": rows[before - 1][0]}
    refused = db_message(cause)
    separator = " " if refused.endswith(".") else ". "
    return RowProblem(row[0], "", "database", refused + separator + conflict)


def _shortest_failing(fails: Any, rows: Records, batch: Any) -> int | None:
    """The least ``n`` (1 to ``len(rows)``) for which ``batch(n)`` fails; ``None`` if none does.
    Failing grows with ``n`` (a batch holds every smaller one), so it halves the range."""
    if not rows or fails(batch(len(rows))) is None:
        return None
    passing, failing = 0, len(rows)
    while failing - passing > 1:
        middle = (passing + failing) // 2
        if fails(batch(middle)) is None:
            passing = middle
        else:
            failing = middle
    return failing

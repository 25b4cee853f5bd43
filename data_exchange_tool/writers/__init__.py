"""Writing validated rows of one chunk into the target model.

A plain ``ModelSerializer`` is written in bulk: on PostgreSQL (psycopg 3) plain inserts go
through ``COPY … FROM STDIN`` with the values ``bulk_create`` would send (each field's
``pre_save`` and ``get_db_prep_save``); elsewhere, or with an upsert on ``Meta.unique_fields``,
through ``bulk_create``, sorted by key so concurrent chunks take row locks in one order. A
serializer with its own ``create()`` (or many-to-many fields) is honoured row by row, each row
in a savepoint; with ``Meta.unique_fields`` an existing key goes to ``serializer.update()``.

On an update a row changes only the fields it gives: an empty cell (a key missing from the
validated data) keeps the stored value; a new row gets the field's default. The caller holds
the transaction; an error about the data (an integrity or data error, a value a field refuses,
an error raised by the serializer's own ``create()``) is raised as :class:`RowWriteError`
naming the file's row, and, when rows of one chunk conflict, the earlier row too.

- :mod:`.base`: the rows a writer takes, :class:`RowProblem`, :class:`RowWriteError`;
- :mod:`.bulk`: bulk writes and upserts; :mod:`.pgcopy`: COPY on PostgreSQL;
- :mod:`.blame`: which row the data makes fail; :mod:`.row_by_row`: a serializer's ``create()``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, models, router, transaction
from django.utils.translation import gettext as _
from rest_framework import serializers

from ..options import ImporterOptions
from . import pgcopy
from .base import (
    ColumnRows,
    Records,
    RowProblem,
    Rows,
    RowWriteError,
    check_deferred,
    constant_default,
    is_data_error,
    records,
    uses_bulk_path,
)
from .blame import blame
from .bulk import bulk_write, copy_columns, refuse_repeated_keys
from .row_by_row import write_row_by_row

__all__ = [
    "ColumnRows",
    "Records",
    "RowProblem",
    "RowWriteError",
    "Rows",
    "check_deferred",
    "constant_default",
    "is_data_error",
    "pgcopy",
    "uses_bulk_path",
    "write_database_problem",
    "write_rows",
]


def write_database_problem(model: type[models.Model]) -> str | None:
    """Why rows of ``model`` and the import's ledger cannot commit together, or ``None``."""
    from ..models import ImportChunk

    target, ledger = router.db_for_write(model), router.db_for_write(ImportChunk)
    if target == ledger:
        return None
    return _(
        "%(model)s is written to the database %(target)r but the import ledger to %(ledger)r: "
        "a chunk's rows and its done mark would commit in different transactions."
    ) % {"model": model._meta.label, "target": target, "ledger": ledger}


def write_rows(
    importer: ImporterOptions,
    serializer: serializers.BaseSerializer,
    rows: Rows,
    *,
    max_errors: int | None = None,
) -> int:
    """Write validated rows (records, or columns); returns the number written.

    Raises :class:`RowWriteError` (at most ``max_errors`` problems) for rows the data makes
    fail; other errors (a lost connection, a bug) propagate as they are.
    """
    if not len(rows):
        return 0
    if importer.unique_fields:
        rows = records(rows)  # an upsert writes records: build them once
        refuse_repeated_keys(importer.target_model, rows, importer.unique_fields)
    if not uses_bulk_path(serializer):
        write_row_by_row(importer, serializer, records(rows), max_errors)
        return len(rows)
    model = serializer.Meta.model  # type: ignore[attr-defined]
    db = router.db_for_write(model)
    try:
        with transaction.atomic(using=db):
            if isinstance(rows, list) or importer.unique_fields or not copy_columns(model, rows):
                bulk_write(importer, model, records(rows))
            check_deferred(db)
    except (DatabaseError, DjangoValidationError) as exc:
        if not is_data_error(exc):
            raise
        raise RowWriteError([blame(importer, model, records(rows), exc)]) from exc
    return len(rows)

"""A serializer's own ``create()`` (or ``update()``), honoured row by row."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, models, router, transaction
from rest_framework import serializers

from ..options import ImporterOptions
from .base import (
    MISSING,
    Records,
    RowProblem,
    RowWriteError,
    check_deferred,
    db_message,
    detail_problems,
    given_value,
    is_data_error,
)


def write_row_by_row(
    importer: ImporterOptions,
    serializer: serializers.BaseSerializer,
    rows: Records,
    max_errors: int | None,
) -> None:
    """Each row in its own savepoint: ``create()``, or ``update()`` of the stored row with the
    same ``unique_fields``. A row the data makes fail is rolled back alone and named; the
    others go on, so every refused row of the chunk is reported at once."""
    model = importer.target_model
    db = router.db_for_write(model)
    keys = importer.unique_fields
    problems: list[RowProblem] = []
    for row_number, data in rows:
        try:
            with transaction.atomic(using=db):
                instance = _stored(model, keys, data) if keys else None
                if instance is None:
                    serializer.create(dict(data))
                else:
                    serializer.update(instance, dict(data))
                check_deferred(db)
        except Exception as exc:
            found = _row_problems(row_number, exc)
            if found is None:
                raise
            problems.extend(found)
            if max_errors is not None and len(problems) >= max_errors:
                break
    if problems:
        raise RowWriteError(problems[:max_errors] if max_errors is not None else problems)


def _stored(
    model: type[models.Model], keys: tuple[str, ...], data: dict[str, Any]
) -> models.Model | None:
    """The stored row whose ``keys`` equal the row's, locked; ``None`` if none (or no key)."""
    lookup = {}
    for key in keys:
        field = model._meta.get_field(key)
        value = given_value(data, field)
        if value is MISSING:
            return None
        lookup[field.attname] = value
    return model._default_manager.select_for_update().filter(**lookup).first()


def _row_problems(row_number: int, exc: Exception) -> list[RowProblem] | None:
    """The problems an error raised while writing one row stands for; ``None``: not the
    data's (a fault, or a bug), so it propagates."""
    if isinstance(exc, serializers.ValidationError):
        return detail_problems(row_number, exc.detail)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return detail_problems(row_number, detail)
    if isinstance(exc, DatabaseError):
        if not is_data_error(exc):
            return None
        return [RowProblem(row_number, "", "database", db_message(exc))]
    if isinstance(exc, ValueError):
        return [RowProblem(row_number, "", "invalid", str(exc) or type(exc).__name__)]
    return None

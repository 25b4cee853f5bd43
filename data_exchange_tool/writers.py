"""Writing validated rows of one chunk into the target model.

A plain ``ModelSerializer`` is written in bulk (``bulk_create``, or an upsert on
``Meta.unique_fields``), sorted by key so concurrent chunks take row locks in one order. A
serializer with its own ``create()`` (or many-to-many fields) is honoured row by row. The caller
holds the transaction; a database error names the row that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, models, transaction
from rest_framework import serializers

from .options import ImporterOptions

BULK_BATCH_SIZE = 1000


@dataclass
class RowWriteError(Exception):
    """A database error on one row; raised after the chunk's writes were rolled back."""

    row_number: int
    message: str


def uses_bulk_path(serializer: serializers.BaseSerializer) -> bool:
    """True when rows can be written in bulk without skipping user code."""
    if not isinstance(serializer, serializers.ModelSerializer):
        return False
    if type(serializer).create is not serializers.ModelSerializer.create:
        return False
    model = serializer.Meta.model
    many = {f.name for f in model._meta.many_to_many}
    return not (many & set(serializer.fields))


def write_rows(
    importer: ImporterOptions,
    serializer: serializers.BaseSerializer,
    rows: list[tuple[int, dict[str, Any]]],
) -> int:
    """Write ``(row number, validated data)`` rows; returns the number written."""
    if not rows:
        return 0
    if uses_bulk_path(serializer):
        _bulk_write(importer, serializer.Meta.model, rows)  # type: ignore[attr-defined]
    else:
        _write_row_by_row(serializer, rows)
    return len(rows)


def _bulk_write(
    importer: ImporterOptions, model: type[models.Model], rows: list[tuple[int, dict[str, Any]]]
) -> None:
    keys = importer.unique_fields
    if keys:
        rows = sorted(rows, key=lambda r: tuple(str(r[1].get(k)) for k in keys))
    objects = [model(**data) for _row, data in rows]
    try:
        with transaction.atomic():
            if keys:
                update_fields = _update_fields(model, rows, keys)
                model._default_manager.bulk_create(
                    objects,
                    batch_size=BULK_BATCH_SIZE,
                    update_conflicts=bool(update_fields),
                    ignore_conflicts=not update_fields,
                    unique_fields=keys if update_fields else None,
                    update_fields=update_fields or None,
                )
            else:
                model._default_manager.bulk_create(objects, batch_size=BULK_BATCH_SIZE)
    except IntegrityError:
        _blame_row(model, rows, keys)
        raise


def _update_fields(
    model: type[models.Model], rows: list[tuple[int, dict[str, Any]]], keys: tuple[str, ...]
) -> list[str]:
    names: set[str] = set()
    for _row, data in rows[:1]:
        names.update(data)
    concrete = {f.name: f for f in model._meta.concrete_fields if not f.primary_key}
    return sorted(concrete[n].name for n in names if n in concrete and n not in keys)


def _blame_row(
    model: type[models.Model], rows: list[tuple[int, dict[str, Any]]], keys: tuple[str, ...]
) -> None:
    """Find the first row whose insert fails on its own, inside savepoints rolled back."""
    for row_number, data in rows:
        try:
            with transaction.atomic():
                obj = model(**data)
                if keys:
                    model._default_manager.bulk_create(
                        [obj],
                        update_conflicts=True,
                        unique_fields=keys,
                        update_fields=_update_fields(model, [(row_number, data)], keys) or None,
                    )
                else:
                    obj.save(force_insert=True)
                raise _Undo
        except _Undo:
            continue
        except IntegrityError as exc:
            raise RowWriteError(row_number, _db_message(exc)) from exc


class _Undo(Exception):
    """Rolls back a probe write."""


def _write_row_by_row(
    serializer: serializers.BaseSerializer, rows: list[tuple[int, dict[str, Any]]]
) -> None:
    for row_number, data in rows:
        try:
            with transaction.atomic():
                serializer.create(dict(data))
        except IntegrityError as exc:
            raise RowWriteError(row_number, _db_message(exc)) from exc


def _db_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"The database refused this row: {text}"

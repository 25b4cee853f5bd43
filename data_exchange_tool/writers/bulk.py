"""Bulk writes of a plain ``ModelSerializer``'s rows: COPY where it can, else ``bulk_create``;
with ``Meta.unique_fields``, upserts sorted by key."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext as _

from ..options import ImporterOptions
from . import pgcopy
from .base import MISSING, ColumnRows, Records, RowProblem, RowWriteError, given_value

BULK_BATCH_SIZE = 1000


def copy_columns(model: type[models.Model], rows: ColumnRows) -> bool:
    """Insert stored columns with one COPY; False when they must go as records."""
    columns = rows.arrow_table()
    return columns is not None and pgcopy.copy_arrow(model, *columns)


def bulk_write(importer: ImporterOptions, model: type[models.Model], rows: Records) -> None:
    """Upsert on ``unique_fields``, else insert: COPY where it can, else ``bulk_create``."""
    keys = importer.unique_fields
    if keys:
        _upsert(model, rows, keys)
    elif not pgcopy.copy_insert(model, [data for _row, data in rows]):
        objects = [model(**data) for _row, data in rows]
        model._default_manager.bulk_create(objects, batch_size=BULK_BATCH_SIZE)


def _upsert(model: type[models.Model], rows: Records, keys: tuple[str, ...]) -> None:
    """Insert new keys, update existing ones: one statement per set of fields the rows give,
    so a row updates exactly the fields it gives (sorted by key: concurrent chunks take row
    locks in one order)."""
    groups: dict[tuple[str, ...], list[models.Model]] = {}
    for _row, data in sorted(rows, key=_sort_key(model, keys)):
        groups.setdefault(_update_fields(model, data, keys), []).append(model(**data))
    for fields, objects in sorted(groups.items()):
        # with only the key given, "updating" the key to itself keeps the row as stored and
        # still lets any other unique constraint refuse the row (no silent ON CONFLICT skip)
        update = list(fields) or [k for k in keys if not model._meta.get_field(k).primary_key]
        model._default_manager.bulk_create(
            objects,
            batch_size=BULK_BATCH_SIZE,
            update_conflicts=bool(update),
            ignore_conflicts=not update,
            unique_fields=keys if update else None,
            update_fields=update or None,
        )


def refuse_repeated_keys(model: type[models.Model], rows: Records, keys: tuple[str, ...]) -> None:
    """Two rows of one chunk with one key (equal once validated) would update one row twice,
    the later winning: refuse the later row, naming the earlier."""
    fields = [model._meta.get_field(k) for k in keys]
    seen: dict[tuple[str, ...], int] = {}
    for row in rows:
        given = [given_value(row[1], f) for f in fields]
        if any(v is None or v is MISSING for v in given):
            continue  # no key: always a new row
        key = tuple(map(str, given))
        if key in seen:
            message = _("This row has the same %(fields)s as row %(row)s of the file (%(key)s).")
            text = message % {"fields": ", ".join(keys), "row": seen[key], "key": ", ".join(key)}
            field = keys[0] if len(keys) == 1 else ""
            raise RowWriteError([RowProblem(row[0], field, "unique", text)])
        seen[key] = row[0]


def _sort_key(model: type[models.Model], keys: tuple[str, ...]) -> Any:
    """Order rows by their key, a related object by the value its foreign key stores."""
    fields = [model._meta.get_field(k) for k in keys]

    def value(data: dict[str, Any], f: Any) -> str:
        v = data.get(f.name, data.get(getattr(f, "attname", f.name)))
        if isinstance(v, models.Model) and f.is_relation:
            v = getattr(v, f.target_field.attname)
        return str(v)

    return lambda row: tuple(value(row[1], f) for f in fields)


def _update_fields(
    model: type[models.Model], data: dict[str, Any], keys: tuple[str, ...]
) -> tuple[str, ...]:
    """The concrete fields (not the key, not the primary key) one row gives a value for."""
    names: set[str] = set()
    for f in model._meta.concrete_fields:
        if not f.primary_key and f.name not in keys and (f.name in data or f.attname in data):
            names.add(f.name)
    return tuple(sorted(names))

"""Writing validated rows of one chunk into the target model.

A plain ``ModelSerializer`` is written in bulk: on PostgreSQL (psycopg 3) plain inserts go
through ``COPY … FROM STDIN`` with the values ``bulk_create`` would send (each field's
``pre_save`` and ``get_db_prep_save``); elsewhere, or with an upsert on ``Meta.unique_fields``,
through ``bulk_create``, sorted by key so concurrent chunks take row locks in one order. A
serializer with its own ``create()`` (or many-to-many fields) is honoured row by row. The caller
holds the transaction; a database error names the row that caused it.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from django.conf import settings
from django.db import IntegrityError, connections, models, router, transaction
from django.db.models import NOT_PROVIDED, AutoField
from rest_framework import serializers

from .options import ImporterOptions

BULK_BATCH_SIZE = 1000
Records: TypeAlias = list[tuple[int, dict[str, Any]]]


class ColumnRows(Protocol):
    """Validated rows held as columns (the preview's stored rows)."""

    def __len__(self) -> int: ...

    def records(self) -> Records:
        """``(row number, data)`` for every row."""
        ...

    def arrow_table(self) -> tuple[Any, set[str]] | None:
        """A pyarrow table named by model attname and the columns whose nulls stand for a
        value not given; or ``None``."""
        ...


Rows: TypeAlias = Records | ColumnRows


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
    importer: ImporterOptions, serializer: serializers.BaseSerializer, rows: Rows
) -> int:
    """Write validated rows (records, or columns); returns the number written."""
    if not len(rows):
        return 0
    if not uses_bulk_path(serializer):
        _write_row_by_row(serializer, _records(rows))
        return len(rows)
    model = serializer.Meta.model  # type: ignore[attr-defined]
    if isinstance(rows, list) or importer.unique_fields or not _copy_columns(model, rows):
        _bulk_write(importer, model, _records(rows))
    return len(rows)


def _records(rows: Rows) -> Records:
    return rows if isinstance(rows, list) else rows.records()


def _copy_columns(model: type[models.Model], rows: ColumnRows) -> bool:
    columns = rows.arrow_table()
    if columns is None:
        return False
    try:
        with transaction.atomic():
            return copy_arrow(model, *columns)
    except IntegrityError:
        _blame_row(model, rows.records(), ())
        raise


def _bulk_write(
    importer: ImporterOptions, model: type[models.Model], rows: list[tuple[int, dict[str, Any]]]
) -> None:
    keys = importer.unique_fields
    if keys:
        rows = sorted(rows, key=_sort_key(model, keys))
    try:
        with transaction.atomic():
            if keys:
                objects = [model(**data) for _row, data in rows]
                _upsert(model, objects, _update_fields(model, rows, keys), keys)
            elif not copy_insert(model, [data for _row, data in rows]):
                objects = [model(**data) for _row, data in rows]
                model._default_manager.bulk_create(objects, batch_size=BULK_BATCH_SIZE)
    except IntegrityError:
        _blame_row(model, rows, keys)
        raise


def _upsert(
    model: type[models.Model],
    objects: list[models.Model],
    update_fields: list[str],
    keys: tuple[str, ...],
) -> None:
    model._default_manager.bulk_create(
        objects,
        batch_size=BULK_BATCH_SIZE,
        update_conflicts=bool(update_fields),
        ignore_conflicts=not update_fields,
        unique_fields=keys if update_fields else None,
        update_fields=update_fields or None,
    )


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
    model: type[models.Model], rows: list[tuple[int, dict[str, Any]]], keys: tuple[str, ...]
) -> list[str]:
    names: set[str] = set()
    for _row, data in rows[:1]:
        names.update(data)
    concrete: dict[str, str] = {}
    for f in model._meta.concrete_fields:
        if not f.primary_key:
            concrete[f.name] = concrete[f.attname] = f.name
    return sorted({concrete[n] for n in names if n in concrete and concrete[n] not in keys})


# -- COPY on PostgreSQL ----------------------------------------------------------------------------


class _NoCopy(Exception):
    """These rows need ``bulk_create`` (a database expression, a mix of set and unset keys)."""


def copy_insert(model: type[models.Model], rows: list[dict[str, Any]]) -> bool:
    """Insert validated ``rows`` with COPY when the database and model allow; False if not.

    The values are those ``bulk_create`` would insert for ``model(**data)``: given values, or
    each missing field's default, through the field's ``get_db_prep_save``. No model instance
    is built: at a million rows that was a quarter of the import's time.
    """
    connection = connections[router.db_for_write(model)]
    if not _can_copy(model, connection):
        return False
    try:
        fields, values = _copy_rows(model, rows, connection)
    except _NoCopy:
        return False
    with _copy(connection, model, fields) as copy:
        for row in values:
            copy.write_row(row)
    return True


@contextmanager
def _copy(
    connection: Any, model: type[models.Model], fields: list[models.Field], options: str = ""
) -> Iterator[Any]:
    """psycopg's ``Copy`` of ``COPY <table> (<fields>) FROM STDIN <options>``."""
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN {options}".rstrip()) as copy,
    ):
        yield copy


def _copied_fields(model: type[models.Model], pk_given: bool) -> list[models.Field]:
    """The fields a COPY fills: every concrete one but generated fields, and an auto primary
    key only when the rows give it."""
    pk = model._meta.pk
    return [
        f
        for f in model._meta.concrete_fields
        if not getattr(f, "generated", False)
        and (pk_given or f is not pk or not isinstance(pk, AutoField))
    ]


def _can_copy(model: type[models.Model], connection: Any) -> bool:
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        return False
    opts = model._meta
    if any(p._meta.concrete_model is not opts.concrete_model for p in opts.get_parent_list()):
        return False  # multi-table inheritance: bulk_create explains the refusal
    if any(_needs_instance(f) for f in opts.concrete_fields):
        return False
    return not any(hasattr(f, "get_placeholder") for f in opts.concrete_fields)


def _needs_instance(field: models.Field) -> bool:
    """A field whose value is made by ``pre_save`` (auto_now, files, custom fields)."""
    if type(field).pre_save is models.Field.pre_save:
        return False
    # DateField.pre_save only acts for auto_now / auto_now_add
    plain_date = isinstance(field, models.DateField) and not (field.auto_now or field.auto_now_add)
    return not plain_date


_MISSING = object()


def _copy_rows(
    model: type[models.Model], rows: list[dict[str, Any]], connection: Any
) -> tuple[list[models.Field], Iterable[tuple[Any, ...]]]:
    """The columns and, per row, the values ``bulk_create`` would insert."""
    pk = model._meta.pk
    given = {_given(row, pk) is not _MISSING for row in rows}
    if isinstance(pk, AutoField) and given == {True, False}:
        raise _NoCopy
    fields = _copied_fields(model, pk_given=given != {False})
    columns = [_copy_column(f, rows, connection) for f in fields]
    return fields, zip(*columns, strict=True)


def _given(row: dict[str, Any], field: models.Field) -> Any:
    value = row.get(field.attname, _MISSING)
    if value is _MISSING:
        value = row.get(field.name, _MISSING)
        if isinstance(value, models.Model) and field.is_relation:
            value = getattr(value, field.target_field.attname)
    return value


def _copy_column(field: models.Field, rows: list[dict[str, Any]], connection: Any) -> list[Any]:
    values = [_given(row, field) for row in rows]
    if any(v is _MISSING for v in values):
        default = field.get_default
        values = [default() if v is _MISSING else v for v in values]
    if any(hasattr(v, "resolve_expression") for v in values):
        raise _NoCopy
    prep = field.get_db_prep_save
    return [prep(v, connection) for v in values]


# -- COPY of an Arrow table -----------------------------------------------------------------------

_TEXT_FIELDS = frozenset(
    {models.CharField, models.TextField, models.SlugField, models.EmailField, models.URLField}
)
_INTEGER_FIELDS = frozenset(
    {
        models.IntegerField,
        models.BigIntegerField,
        models.SmallIntegerField,
        models.PositiveIntegerField,
        models.PositiveBigIntegerField,
        models.PositiveSmallIntegerField,
        models.AutoField,
        models.BigAutoField,
        models.SmallAutoField,
    }
)
_RELATED_FIELDS = frozenset({models.ForeignKey, models.OneToOneField})


def copy_arrow(model: type[models.Model], table: Any, absent: Collection[str] = ()) -> bool:
    """Insert the rows of a pyarrow ``table`` with one ``COPY … (FORMAT csv)``; False if not.

    Columns are named by field ``attname``. A field with no column, or a null in a column named
    in ``absent``, takes the field's default, as ``bulk_create`` gives it (only a constant
    default: a callable one needs Python per row). Every column must be of a type whose CSV
    text PostgreSQL reads as the very value ``bulk_create`` would send: text, integers,
    booleans, dates, UTC timestamps, UUIDs and decimals as their exact text (with no more
    places than the column keeps). pyarrow writes the CSV: no Python object per value.
    """
    connection = connections[router.db_for_write(model)]
    if not _can_copy(model, connection):
        return False
    fields = _copied_fields(model, pk_given=model._meta.pk.attname in table.column_names)
    if set(table.column_names) - {f.attname for f in fields}:
        return False
    columns = [_column_for(f, table, f.attname in absent) for f in fields]
    if any(c is None or not _sends_as_is(f, c) for f, c in zip(fields, columns, strict=True)):
        return False
    import pyarrow as pa

    text = _csv_bytes(pa.table(columns, names=[f.attname for f in fields]))
    with _copy(connection, model, fields, "WITH (FORMAT csv)") as copy:
        copy.write(text)
    return True


def _column_for(field: models.Field, table: Any, absent: bool) -> Any | None:
    """The field's values: its column, with defaults where values were not given."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if field.attname in table.column_names:
        column = table.column(field.attname)
        if not absent or not column.null_count:
            return column
    else:
        column = None
    default = _constant_default(field)
    if default is _MISSING:
        return None
    try:
        if column is None or column.null_count == len(column):
            return pa.array([default] * table.num_rows)
        return pc.fill_null(column, pa.scalar(default, column.type))
    except (pa.ArrowException, TypeError, ValueError):
        return None


def _constant_default(field: models.Field) -> Any:
    """What ``field.get_default()`` gives, when it is the same for every row; else ``_MISSING``."""
    if getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
        return _MISSING
    if field.has_default() and callable(field.default):
        return _MISSING
    return field.get_default()


def _csv_bytes(table: Any) -> bytes:
    """CSV without header; strings always quoted, so an unquoted empty field is NULL."""
    import pyarrow.csv as pacsv

    sink = io.BytesIO()
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    pacsv.write_csv(table, sink, options)
    return sink.getvalue()


def _sends_as_is(field: models.Field, column: Any) -> bool:
    """True when the column's CSV text is what ``field.get_db_prep_save`` would send."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_null(kind):
        return True
    cls = type(field)
    if cls in _RELATED_FIELDS:
        return _sends_as_is(field.target_field, column)
    if cls in _TEXT_FIELDS:
        return pa.types.is_string(kind)
    if cls in _INTEGER_FIELDS:
        return pa.types.is_int64(kind)
    if cls is models.BooleanField:
        return pa.types.is_boolean(kind)
    if cls is models.DateField:
        return pa.types.is_date32(kind)
    if cls is models.DateTimeField:
        return settings.USE_TZ and pa.types.is_timestamp(kind) and kind.tz == "UTC"
    if cls is models.UUIDField:
        return pa.types.is_string(kind) and _all_match(column, _UUID_TEXT)
    if cls is models.DecimalField:
        return pa.types.is_string(kind) and _all_match(column, _decimal_text(field))
    return False


_UUID_TEXT = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _decimal_text(field: models.DecimalField) -> str:
    places = field.decimal_places or 0
    return rf"^-?[0-9]+(\.[0-9]{{0,{places}}})?$" if places else r"^-?[0-9]+$"


def _all_match(column: Any, pattern: str) -> bool:
    import pyarrow.compute as pc

    matched = pc.match_substring_regex(column, pattern)
    return pc.all(pc.fill_null(matched, True)).as_py() is not False


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

"""COPY on PostgreSQL (psycopg 3): records with the values ``bulk_create`` would send, or the
stored columns of a chunk as one pyarrow-written CSV."""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connections, models, router
from django.db.models import AutoField

from .base import MISSING, constant_default, given_value


class NoCopy(Exception):
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
    except NoCopy:
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


def _copy_rows(
    model: type[models.Model], rows: list[dict[str, Any]], connection: Any
) -> tuple[list[models.Field], Iterable[tuple[Any, ...]]]:
    """The columns and, per row, the values ``bulk_create`` would insert."""
    pk = model._meta.pk
    given = {given_value(row, pk) is not MISSING for row in rows}
    if isinstance(pk, AutoField) and given == {True, False}:
        raise NoCopy
    fields = _copied_fields(model, pk_given=given != {False})
    columns = [_copy_column(f, rows, connection) for f in fields]
    return fields, zip(*columns, strict=True)


def _copy_column(field: models.Field, rows: list[dict[str, Any]], connection: Any) -> list[Any]:
    values = [given_value(row, field) for row in rows]
    if any(v is MISSING for v in values):
        default = field.get_default
        values = [default() if v is MISSING else v for v in values]
    if any(hasattr(v, "resolve_expression") for v in values):
        raise NoCopy
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
    default = constant_default(field)
    if default is MISSING:
        return None
    try:
        if column is None or column.null_count == len(column):
            return pa.array([default] * table.num_rows)
        return pc.fill_null(column, pa.scalar(default, column.type))
    except (pa.ArrowException, TypeError, ValueError):
        return None


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

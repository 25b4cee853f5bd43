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
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    connections,
    models,
    router,
    transaction,
)
from django.db.models import NOT_PROVIDED, AutoField
from django.utils.translation import gettext as _
from rest_framework import serializers

from .options import ImporterOptions
from .validation.errors import flatten

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


@dataclass(frozen=True)
class RowProblem:
    """Why one row was not written: the serializer field it belongs to (or ``""``), a code and
    a message for the user."""

    row_number: int
    field: str
    code: str
    message: str


class RowWriteError(Exception):
    """Rows refused by the database or by the serializer's own ``create()``; nothing of the
    batch stays written once the caller's transaction rolls back."""

    def __init__(self, problems: list[RowProblem]) -> None:
        super().__init__(problems[0].message)
        self.problems = problems

    @property
    def row_number(self) -> int:
        return self.problems[0].row_number

    @property
    def message(self) -> str:
        return self.problems[0].message


# SQLSTATE classes about the values: cardinality (an upsert touching a row twice), data, integrity
_DATA_SQLSTATES = ("21", "22", "23")


def is_data_error(exc: BaseException) -> bool:
    """True for an error caused by the values written, not by a fault of the system."""
    if isinstance(exc, IntegrityError | DataError | DjangoValidationError):
        return True
    state = getattr(exc.__cause__, "sqlstate", None) or ""
    return isinstance(exc, DatabaseError) and state.startswith(_DATA_SQLSTATES)


def write_database_problem(model: type[models.Model]) -> str | None:
    """Why rows of ``model`` and the import's ledger cannot commit together, or ``None``."""
    from .models import ImportChunk

    target, ledger = router.db_for_write(model), router.db_for_write(ImportChunk)
    if target == ledger:
        return None
    return _(
        "%(model)s is written to the database %(target)r but the import ledger to %(ledger)r: "
        "a chunk's rows and its done mark would commit in different transactions."
    ) % {"model": model._meta.label, "target": target, "ledger": ledger}


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
        rows = _records(rows)  # an upsert writes records: build them once
        _refuse_repeated_keys(importer.target_model, rows, importer.unique_fields)
    if not uses_bulk_path(serializer):
        _write_row_by_row(importer, serializer, _records(rows), max_errors)
        return len(rows)
    model = serializer.Meta.model  # type: ignore[attr-defined]
    db = router.db_for_write(model)
    try:
        with transaction.atomic(using=db):
            if isinstance(rows, list) or importer.unique_fields or not _copy_columns(model, rows):
                _bulk_write(importer, model, _records(rows))
            check_deferred(db)
    except (DatabaseError, DjangoValidationError) as exc:
        if not is_data_error(exc):
            raise
        raise RowWriteError([_blame(importer, model, _records(rows), exc)]) from exc
    return len(rows)


def check_deferred(db: str) -> None:
    """On PostgreSQL, check now the constraints deferred to the commit (foreign keys): a
    related row deleted meanwhile then fails its own row, not the commit of the chunk."""
    connection = connections[db]
    if connection.vendor == "postgresql":
        connection.check_constraints()


def _records(rows: Rows) -> Records:
    return rows if isinstance(rows, list) else rows.records()


def _copy_columns(model: type[models.Model], rows: ColumnRows) -> bool:
    columns = rows.arrow_table()
    return columns is not None and copy_arrow(model, *columns)


def _bulk_write(importer: ImporterOptions, model: type[models.Model], rows: Records) -> None:
    keys = importer.unique_fields
    if keys:
        _upsert(model, rows, keys)
    elif not copy_insert(model, [data for _row, data in rows]):
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


def _refuse_repeated_keys(model: type[models.Model], rows: Records, keys: tuple[str, ...]) -> None:
    """Two rows of one chunk with one key (equal once validated) would update one row twice,
    the later winning: refuse the later row, naming the earlier."""
    fields = [model._meta.get_field(k) for k in keys]
    seen: dict[tuple[str, ...], int] = {}
    for row in rows:
        given = [_given(row[1], f) for f in fields]
        if any(v is None or v is _MISSING for v in given):
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


# -- which row the data makes fail ----------------------------------------------------------------


class _Undo(Exception):
    """Rolls back a probe write."""


def _blame(
    importer: ImporterOptions, model: type[models.Model], rows: Records, error: Exception
) -> RowProblem:
    """The first row (in file order) that fails, written after the rows before it, inside
    savepoints rolled back; it names the earlier row it conflicts with when it passes alone.
    Probes halve the rows each time: a few writes of the chunk, only when it failed."""

    def fails(batch: Records) -> Exception | None:
        try:
            db = router.db_for_write(model)
            with transaction.atomic(using=db):
                _bulk_write(importer, model, batch)
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
        ) % {"first": first, "last": last, "error": _db_text(error)}
        return RowProblem(first, "", "database", message)
    row = rows[end - 1]
    alone = fails([row])
    if alone is not None:
        return RowProblem(row[0], "", "database", _db_message(alone))
    before = _shortest_failing(fails, rows[: end - 1], lambda n: [*rows[:n], row])
    if before is None:
        return RowProblem(row[0], "", "database", _db_message(error))
    cause = fails([rows[before - 1], row]) or error
    conflict = _("It conflicts with row %(row)s of the file.") % {"row": rows[before - 1][0]}
    refused = _db_message(cause)
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


# -- a serializer's own create() -------------------------------------------------------------------


def _write_row_by_row(
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
        value = _given(data, field)
        if value is _MISSING:
            return None
        lookup[field.attname] = value
    return model._default_manager.select_for_update().filter(**lookup).first()


def _row_problems(row_number: int, exc: Exception) -> list[RowProblem] | None:
    """The problems an error raised while writing one row stands for; ``None``: not the
    data's (a fault, or a bug), so it propagates."""
    if isinstance(exc, serializers.ValidationError):
        return _detail_problems(row_number, exc.detail)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return _detail_problems(row_number, detail)
    if isinstance(exc, DatabaseError):
        if not is_data_error(exc):
            return None
        return [RowProblem(row_number, "", "database", _db_message(exc))]
    if isinstance(exc, ValueError):
        return [RowProblem(row_number, "", "invalid", str(exc) or type(exc).__name__)]
    return None


def _detail_problems(row_number: int, detail: Any) -> list[RowProblem]:
    return [RowProblem(row_number, name, code, text) for name, code, text in flatten(detail)]


def _db_message(exc: Exception) -> str:
    return _("The database refused this row: %(error)s") % {"error": _db_text(exc)}


def _db_text(exc: Exception) -> str:
    """The database's message and detail, without the statement's context (a COPY line)."""
    if isinstance(exc, DjangoValidationError):
        return " ".join(exc.messages)
    diag = getattr(exc.__cause__, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        detail = getattr(diag, "message_detail", None)
        return f"{primary}: {detail}" if detail else primary
    lines = [line for line in str(exc).strip().splitlines() if not line.startswith("CONTEXT:")]
    return lines[0] if lines else type(exc).__name__

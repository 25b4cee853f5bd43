"""What every writer shares: the rows it takes, the problems it reports, and which errors are
the data's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError, IntegrityError, connections, models
from django.utils.translation import gettext as _
from rest_framework import serializers

from ..validation.errors import flatten

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


def uses_bulk_path(serializer: serializers.BaseSerializer) -> bool:
    """True when rows can be written in bulk without skipping user code."""
    if not isinstance(serializer, serializers.ModelSerializer):
        return False
    if type(serializer).create is not serializers.ModelSerializer.create:
        return False
    model = serializer.Meta.model
    many = {f.name for f in model._meta.many_to_many}
    return not (many & set(serializer.fields))


def check_deferred(db: str) -> None:
    """On PostgreSQL, check now the constraints deferred to the commit (foreign keys): a
    related row deleted meanwhile then fails its own row, not the commit of the chunk."""
    connection = connections[db]
    if connection.vendor == "postgresql":
        connection.check_constraints()


def records(rows: Rows) -> Records:
    """``(row number, data)`` of records or of columns."""
    return rows if isinstance(rows, list) else rows.records()


MISSING = object()  # a row that gives no value for a field


def constant_default(field: models.Field, otherwise: Any = MISSING) -> Any:
    """What a bulk insert writes for ``field`` when a row leaves it out, if that is the same for
    every row (``field.get_default()``); ``otherwise`` for a database or a callable default."""
    if getattr(field, "db_default", models.NOT_PROVIDED) is not models.NOT_PROVIDED:
        return otherwise
    if field.has_default() and callable(field.default):
        return otherwise
    return field.get_default()


def given_value(row: dict[str, Any], field: models.Field) -> Any:
    """The value ``row`` gives ``field`` (a related object as its foreign key), or ``MISSING``."""
    value = row.get(field.attname, MISSING)
    if value is MISSING:
        value = row.get(field.name, MISSING)
        if isinstance(value, models.Model) and field.is_relation:
            value = getattr(value, field.target_field.attname)
    return value


def detail_problems(row_number: int, detail: Any) -> list[RowProblem]:
    """One problem per message of a DRF or Django error detail raised for a row."""
    return [RowProblem(row_number, name, code, text) for name, code, text in flatten(detail)]


def db_message(exc: Exception) -> str:
    """What the user reads about a row the database refused."""
    return _("The database refused this row: %(error)s") % {"error": db_text(exc)}


def db_text(exc: Exception) -> str:
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

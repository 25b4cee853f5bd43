"""Row validation with the importer's DRF serializer.

Rows are validated by one serializer instance reused for a whole chunk, with the result of
``serializer.run_validation`` per row, so the user's field validators, ``validate_<field>()``
and ``validate()`` all run with their own messages; related fields and unique checks cost one
query per field per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _
from rest_framework import serializers
from rest_framework.validators import UniqueTogetherValidator, UniqueValidator

from ..chunkfiles import ChunkRows
from ..options import ImporterOptions
from .compiled import compile_serializer
from .errors import clip, flatten
from .outcomes import Outcome

BATCH_ROWS = 20_000  # rows validated together (one lookup query per field per batch)
Record = tuple[int, int, dict[str, str]]


@dataclass(frozen=True)
class CellError:
    """One error, pinned to a row and, when it belongs to one, a column."""

    row_number: int
    column: str
    field: str
    code: str
    message: str
    value: str = ""


@dataclass
class ValidationResult:
    valid: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[CellError] = field(default_factory=list)
    invalid_rows: int = 0


class RowValidator:
    """Validates rows of one job with one serializer instance.

    ``column_names`` maps serializer fields to the columns as written in the file, so errors
    name what the user sees. Rows are validated a batch at a time through the compiled plan
    (see :mod:`.compiled`) when the serializer allows it, else one by
    one with ``serializer.run_validation``; both give the same values and errors.
    """

    def __init__(
        self,
        importer: ImporterOptions,
        column_names: dict[str, str],
        *,
        context: dict[str, Any] | None = None,
        max_errors: int | None = None,
    ) -> None:
        self.importer = importer
        self.column_names = column_names
        self.max_errors = max_errors
        self.serializer = importer.serializer_class(context=context or {})
        if importer.unique_fields:
            _drop_unique_validators(self.serializer, importer.unique_fields)
        self.plan = compile_serializer(self.serializer)

    def validate(
        self,
        records: Iterable[tuple[int, int, dict[str, str]]],
        header_width: int | None = None,
    ) -> ValidationResult:
        """Validate ``(row number, extra cells, data)`` records.

        Extra cells, when not 0, make the row an error: the count of values beyond the
        header, or, negative, of the fields missing from a header ``header_width`` wide.
        """
        result = ValidationResult()
        valid = result.valid
        for batch in _batches(records, BATCH_ROWS):
            for row_number, data, (ok, payload) in self._outcomes(batch, header_width):
                if ok:
                    valid.append((row_number, payload))
                else:
                    self._record_errors(result, row_number, data, payload)
        return result

    def validate_chunk(self, rows: ChunkRows) -> ValidationResult:
        """Validate a chunk's rows; column by column when the serializer allows it."""
        plan = self.plan
        if plan is None or not plan.column_wise or len(rows) > BATCH_ROWS or any(rows.extra_cells):
            return self.validate(rows.records(), rows.header_width)
        outcomes = plan.validate_columns(rows.columns, len(rows))
        numbers = rows.row_numbers
        result = ValidationResult(
            valid=[(n, payload) for n, (ok, payload) in zip(numbers, outcomes, strict=True) if ok]
        )
        for i, (ok, payload) in enumerate(outcomes):
            if not ok:
                self._record_errors(result, numbers[i], rows.cells(i), payload)
        return result

    def _outcomes(
        self, batch: list[Record], header_width: int | None = None
    ) -> Iterator[tuple[int, dict[str, str], Outcome]]:
        """(row number, data, (ok, validated data or error detail)) in row order."""
        rows = [data for _number, extra, data in batch if not extra]
        if self.plan is not None and all(type(data) is dict for data in rows):
            done = iter(self.plan.validate(rows))
        else:
            done = map(self._run_validation, rows)
        for row_number, extra, data in batch:
            if extra:
                yield row_number, data, (False, _ExtraValues(extra, header_width))
            else:
                yield row_number, data, next(done)

    def _run_validation(self, data: dict[str, str]) -> Outcome:
        try:
            return True, self.serializer.run_validation(data)
        except serializers.ValidationError as exc:
            return False, exc.detail

    def _record_errors(
        self, result: ValidationResult, row_number: int, data: dict[str, str], detail: Any
    ) -> None:
        result.invalid_rows += 1
        errors = list(self._row_errors(row_number, data, detail))
        room = None if self.max_errors is None else self.max_errors - len(result.errors)
        result.errors.extend(errors if room is None else errors[: max(room, 0)])

    def _row_errors(
        self, row_number: int, data: dict[str, str], detail: Any
    ) -> Iterator[CellError]:
        if isinstance(detail, _ExtraValues):
            yield detail.error(row_number)
            return
        yield from self._flatten(row_number, detail, data)

    def _flatten(self, row_number: int, detail: Any, data: dict[str, str]) -> Iterator[CellError]:
        for name, code, message in flatten(detail):
            column = self.column_names.get(name, name) if name else ""
            yield CellError(row_number, column, name, code, message, clip(data.get(name, "")))


@dataclass(frozen=True)
class _ExtraValues:
    """A row with ``count`` values beyond the header, or (negative) fields missing."""

    count: int
    header_width: int | None = None

    def error(self, row_number: int) -> CellError:
        if self.count > 0:
            message = _("This row has %(count)d more value(s) than the header has columns.")
            return CellError(row_number, "", "", "extra_values", message % {"count": self.count})
        if self.header_width is None:
            message = _("This row has %(count)d field(s) fewer than the header.")
            values = {"count": -self.count}
        else:
            message = _("This row has %(fields)d fields; the header has %(width)d.")
            values = {"fields": self.header_width + self.count, "width": self.header_width}
        return CellError(row_number, "", "", "missing_values", message % values)


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _drop_unique_validators(serializer: serializers.Serializer, keys: tuple[str, ...]) -> None:
    """With upserts on ``keys``, an existing key is an update, not a uniqueness error."""
    for name in keys:
        if name in serializer.fields:
            f = serializer.fields[name]
            f.validators = [v for v in f.validators if not isinstance(v, UniqueValidator)]
    serializer.validators = [
        v
        for v in serializer.validators
        if not (isinstance(v, UniqueTogetherValidator) and set(v.fields) <= set(keys))
    ]

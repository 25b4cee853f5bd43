"""Header matching and row validation with the importer's DRF serializer.

Headers match serializer fields ignoring case and surrounding spaces (and through
``Meta.header_aliases``). Rows are validated by one serializer instance reused for a whole
chunk (``run_validation`` per row, as DRF's ``ListSerializer`` does), so the user's field
validators, ``validate_<field>()`` and ``validate()`` all run with their own messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.validators import UniqueTogetherValidator, UniqueValidator

from .exceptions import HeaderMismatch
from .options import ImporterOptions, normalise_header

MAX_VALUE_LENGTH = 1000
NON_FIELD = serializers.api_settings.NON_FIELD_ERRORS_KEY


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


def writable_fields(serializer: serializers.BaseSerializer) -> dict[str, serializers.Field]:
    return {name: f for name, f in serializer.fields.items() if not f.read_only}


def match_header(header: list[str], importer: ImporterOptions) -> dict[str, int]:
    """Map each serializer field to the index of its column in ``header``.

    Raises :class:`HeaderMismatch` naming every missing required column and every column
    that matches no field, before any row is validated.
    """
    fields = writable_fields(importer.serializer_class())
    by_name = {normalise_header(name): name for name in fields}
    by_name.update({k: v for k, v in importer.normalised_aliases().items() if v in fields})
    mapping: dict[str, int] = {}
    unknown: list[str] = []
    duplicated: list[str] = []
    for index, raw in enumerate(header):
        name = by_name.get(normalise_header(raw or ""))
        if name is None:
            if (raw or "").strip():
                unknown.append(raw.strip())
            continue
        if name in mapping:
            duplicated.append(raw.strip())
        mapping[name] = index
    missing = [name for name, f in fields.items() if f.required and name not in mapping]
    problems = []
    if missing:
        problems.append("missing required column(s): " + ", ".join(missing))
    if unknown:
        problems.append("unknown column(s): " + ", ".join(unknown))
    if duplicated:
        problems.append("column(s) given twice: " + ", ".join(duplicated))
    if problems:
        expected = ", ".join(fields)
        raise HeaderMismatch(
            "The header does not match the importer: "
            + "; ".join(problems)
            + f". Expected columns: {expected}."
        )
    return mapping


class RowValidator:
    """Validates rows of one job with one serializer instance.

    ``column_names`` maps serializer fields to the columns as written in the file, so errors
    name what the user sees.
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

    def validate(self, records: Iterable[tuple[int, int, dict[str, str]]]) -> ValidationResult:
        """Validate ``(row number, extra cells, data)`` records."""
        result = ValidationResult()
        for row_number, extra, data in records:
            errors = list(self._row_errors(row_number, extra, data))
            if errors:
                result.invalid_rows += 1
                room = None if self.max_errors is None else self.max_errors - len(result.errors)
                result.errors.extend(errors if room is None else errors[: max(room, 0)])
            else:
                result.valid.append((row_number, self._validated))
        return result

    def _row_errors(self, row_number: int, extra: int, data: dict[str, str]) -> Iterator[CellError]:
        if extra:
            yield CellError(
                row_number,
                "",
                "",
                "extra_values",
                f"This row has {extra} more value(s) than the header has columns.",
            )
            return
        try:
            self._validated = self.serializer.run_validation(data)
        except serializers.ValidationError as exc:
            yield from self._flatten(row_number, exc.detail, data)

    def _flatten(self, row_number: int, detail: Any, data: dict[str, str]) -> Iterator[CellError]:
        if not isinstance(detail, dict):
            detail = {NON_FIELD: detail}
        for name, messages in detail.items():
            column = "" if name == NON_FIELD else self.column_names.get(name, name)
            value = _clip(data.get(name, "")) if name != NON_FIELD else ""
            for message in _messages(messages):
                code = getattr(message, "code", "") or "invalid"
                yield CellError(
                    row_number,
                    column,
                    "" if name == NON_FIELD else name,
                    str(code),
                    str(message),
                    value,
                )


def _messages(messages: Any) -> Iterator[ErrorDetail | str]:
    if isinstance(messages, dict):
        for key, nested in messages.items():
            for message in _messages(nested):
                yield ErrorDetail(f"{key}: {message}", getattr(message, "code", None))
    elif isinstance(messages, list | tuple):
        for message in messages:
            yield from _messages(message)
    else:
        yield messages


def _clip(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_VALUE_LENGTH else text[:MAX_VALUE_LENGTH] + "…"


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

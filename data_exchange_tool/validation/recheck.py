"""What the import checks again of the rows validated at preview.

Only what the database may have changed since the preview is checked again: that related rows
still exist (one ``__in`` query per related field) and, for each field the serializer checks for
uniqueness, that no row took the value meanwhile (one query per field). :func:`plan_for` says
which checks an importer needs, or that its rows must be validated again in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from rest_framework import relations, serializers
from rest_framework.validators import (
    BaseUniqueForValidator,
    UniqueTogetherValidator,
    UniqueValidator,
)

from ..chunkfiles.validated import ABSENT, StoredRows
from ..options import ImporterOptions
from ..writers import uses_bulk_path
from .dbquery import values_in
from .errors import code_of, messages


@dataclass(frozen=True)
class RelatedCheck:
    """A related field: its rows store the value of ``target`` (a field of the related model)."""

    name: str
    key: str
    field: relations.RelatedField
    model_field: models.ForeignKey
    target: models.Field


@dataclass(frozen=True)
class UniqueCheck:
    """A field whose value the serializer requires to be unique in the table."""

    name: str
    key: str
    field: serializers.Field
    validator: UniqueValidator


@dataclass(frozen=True)
class Plan:
    """What the import must check again for one importer."""

    model: type[models.Model]
    related: tuple[RelatedCheck, ...] = ()
    unique: tuple[UniqueCheck, ...] = ()

    @property
    def related_keys(self) -> dict[str, RelatedCheck]:
        return {check.key: check for check in self.related}


def plan_for(importer: ImporterOptions, serializer: serializers.BaseSerializer) -> Plan | None:
    """The checks that make stored rows trustworthy at import; ``None`` when the importer must
    be validated again in full (``revalidate_on_import``, a serializer with its own ``create()``,
    or validation that reads the database in a way not re-checked here)."""
    if importer.revalidate_on_import or not uses_bulk_path(serializer):
        return None
    keys = set(importer.unique_fields)
    for validator in serializer.validators:
        if isinstance(validator, BaseUniqueForValidator):
            return None
        if isinstance(validator, UniqueTogetherValidator) and not set(validator.fields) <= keys:
            return None
    model = serializer.Meta.model  # type: ignore[attr-defined]
    related: list[RelatedCheck] = []
    unique: list[UniqueCheck] = []
    for name, f in serializer.fields.items():
        if f.read_only:
            continue
        if isinstance(f, relations.ManyRelatedField):
            return None
        if isinstance(f, relations.RelatedField):
            check = _related_check(model, name, f)
            if check is None:
                return None
            related.append(check)
        for validator in f.validators:
            if isinstance(validator, UniqueValidator) and name not in keys:
                if len(f.source_attrs) != 1:
                    return None
                unique.append(UniqueCheck(name, f.source_attrs[0], f, validator))
    return Plan(model, tuple(related), tuple(unique))


def _related_check(
    model: type[models.Model], name: str, f: relations.RelatedField
) -> RelatedCheck | None:
    if len(f.source_attrs) != 1:
        return None
    try:
        model_field = model._meta.get_field(f.source_attrs[0])
    except FieldDoesNotExist:
        return None
    if not (model_field.many_to_one or model_field.one_to_one) or not model_field.concrete:
        return None
    return RelatedCheck(name, model_field.name, f, model_field, model_field.target_field)


@dataclass(frozen=True)
class Failure:
    """One stored row the database no longer accepts: which field and DRF's message."""

    row_number: int
    name: str
    code: str
    message: str


class Recheck:
    """Checks stored rows against the database as it is now; may replace related values that
    now resolve to another row (as validating the cell again would)."""

    def __init__(self, plan: Plan, rows: StoredRows, cell_text: Any) -> None:
        self.plan = plan
        self.rows = rows
        self.cell_text = cell_text  # (serializer field name, row number) -> cell text

    def failures(self) -> list[Failure]:
        found: list[Failure] = []
        for related in self.plan.related:
            found.extend(self._missing_related(related))
        for unique in self.plan.unique:
            found.extend(self._taken(unique))
        return sorted(found, key=lambda f: f.row_number)

    def _missing_related(self, check: RelatedCheck) -> list[Failure]:
        values = self.rows.column(check.key)
        if values is None:
            return []
        lookup = check.target.attname
        wanted = {v for v in values if v is not None and v is not ABSENT}
        existing = set(values_in(check.field.get_queryset(), lookup, wanted))
        failures = []
        for i, value in enumerate(values):
            if value is None or value is ABSENT or value in existing:
                continue
            row_number = self.rows.row_numbers[i]
            try:
                found = check.field.run_validation(self.cell_text(check.name, row_number))
            except serializers.ValidationError as exc:
                failures.extend(_failures(row_number, check.name, exc.detail))
                continue
            self.rows.replace(check.key, i, None if found is None else getattr(found, lookup))
        return failures

    def _taken(self, check: UniqueCheck) -> list[Failure]:
        values = self.rows.column(check.key)
        if values is None:
            return []
        present = [(i, v) for i, v in enumerate(values) if v is not None and v is not ABSENT]
        if check.validator.lookup != "exact":
            return self._taken_one_by_one(check, present)
        existing = set(values_in(check.validator.queryset, check.key, {v for _i, v in present}))
        message = str(check.validator.message)
        return [
            Failure(self.rows.row_numbers[i], check.name, "unique", message)
            for i, v in present
            if v in existing
        ]

    def _taken_one_by_one(
        self, check: UniqueCheck, present: list[tuple[int, Any]]
    ) -> list[Failure]:
        failures = []
        for i, value in present:
            try:
                check.validator(value, check.field)
            except serializers.ValidationError as exc:
                failures.extend(_failures(self.rows.row_numbers[i], check.name, exc.detail))
        return failures


def _failures(row_number: int, name: str, detail: Any) -> list[Failure]:
    return [Failure(row_number, name, code_of(m), str(m)) for m in messages(detail)]

"""A serializer's validation, compiled to work on a chunk of rows column by column.

``ChunkPlan.validate`` gives, for every row, what ``serializer.run_validation(row)`` gives: the
validated dict or the error detail. Columns of compiled fields are converted in one pass each
(related fields and unique checks with one query per field); then, row by row and in field order,
the remaining validators, ``validate_<field>()``, the serializer's validators and ``validate()``
run as DRF runs them. Fields that are not compiled run ``field.run_validation`` per cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import Field, SkipField, empty, get_error_detail
from rest_framework.relations import RelatedField
from rest_framework.serializers import as_serializer_error
from rest_framework.validators import UniqueValidator

from .converters import CHAR_FIELDS, CONVERTERS, Converter, known_check, text_check
from .lookups import BatchedUnique, RelatedResolver
from .outcomes import MISS, Failed, Outcome, Pending, Returned, run_validators

SERIALIZER_HOOKS = ("run_validation", "to_internal_value", "validate_empty_values")


@dataclass
class FieldPlan:
    """How one writable field is validated for a chunk."""

    field: Field
    name: str
    validate_method: Callable[[Any], Any] | None
    compiled: bool
    check: Callable[[Any], bool] | None = None
    rest: list[Any] = field(default_factory=list)

    @property
    def key(self) -> str | None:
        """The key in the validated data when the source is not dotted."""
        attrs = self.field.source_attrs
        return attrs[0] if len(attrs) == 1 else None


def compile_serializer(serializer: serializers.BaseSerializer) -> ChunkPlan | None:
    """A plan for ``serializer``, or ``None`` when only DRF's own per-row path is exact."""
    if not isinstance(serializer, serializers.Serializer) or getattr(serializer, "partial", False):
        return None
    cls = type(serializer)
    for hook in SERIALIZER_HOOKS:
        if getattr(cls, hook) is not getattr(serializers.Serializer, hook):
            return None
    if cls._writable_fields is not serializers.Serializer._writable_fields:
        return None
    return ChunkPlan(serializer)


def _compilable(f: Field) -> bool:
    if f.source == "*":
        return False
    return type(f) in CONVERTERS or RelatedResolver.supports(f)


class ChunkPlan:
    def __init__(self, serializer: serializers.Serializer) -> None:
        self.serializer = serializer
        self.fields = [self._plan(f) for f in serializer._writable_fields]
        cls = type(serializer)
        self.run_serializer_validators = bool(serializer.validators) or (
            cls.run_validators is not serializers.Serializer.run_validators
        )
        self.run_validate = cls.validate is not serializers.Serializer.validate

    def _plan(self, f: Field) -> FieldPlan:
        method = getattr(self.serializer, "validate_" + f.field_name, None)
        if not _compilable(f):
            return FieldPlan(f, f.field_name, method, compiled=False)
        check, rest = known_check(list(f.validators))
        if isinstance(f, CHAR_FIELDS) and check is not None:
            known = [v for v in f.validators if all(v is not r for r in rest)]
            check = text_check(known) or check
        return FieldPlan(f, f.field_name, method, compiled=True, check=check, rest=rest)

    # -- the chunk ----------------------------------------------------------------------------

    def validate(self, rows: list[dict[str, Any]]) -> list[Outcome]:
        """``serializer.run_validation(row)`` for every row, as (ok, data or detail)."""
        slots = [
            self._slot(plan, [row.get(plan.name, empty) for row in rows] if plan.compiled else None)
            for plan in self.fields
        ]
        return [self._row(i, row, slots) for i, row in enumerate(rows)]

    @property
    def column_wise(self) -> bool:
        """True when every field is compiled and nothing runs per row but the fields' own
        steps (no ``validate_<field>()``, serializer validators or ``validate()``)."""
        return bool(self.fields) and not (
            self.run_serializer_validators
            or self.run_validate
            or any(
                not p.compiled or p.validate_method is not None or p.key is None
                for p in self.fields
            )
        )

    def validate_columns(self, columns: dict[str, list[Any]], size: int) -> list[Outcome]:
        """:meth:`validate` for ``size`` rows given as columns of cells (``None``: empty).

        Only for a :attr:`column_wise` plan. A row whose every cell converted cleanly is its
        cells zipped into a dict, which is what :meth:`_row` would build for it; the other rows
        go through :meth:`_row`.
        """
        slots = [self._slot(plan, _raws(columns.get(plan.name), size)) for plan in self.fields]
        if any(slot.rest for slot in slots):
            return [self._row(i, {}, slots) for i in range(size)]
        keys = [slot.key for slot in slots]
        cells = [slot.cells for slot in slots]
        rows = zip(*cells, strict=True)
        out: list[Outcome] = [(True, dict(zip(keys, values, strict=True))) for values in rows]
        for i in _rows_left_to_drf(cells):
            out[i] = self._row(i, {}, slots)
        return out

    def _slot(self, plan: FieldPlan, raws: list[Any] | None) -> Slot:
        if raws is None:
            return Slot(plan.name, plan.field, None, [], [], plan.validate_method, plan.key)
        f = plan.field
        fast, to_internal = self._converters(f, raws)
        cells = convert_column(raws, fast, plan.check, lambda raw: drf_stage(f, raw, to_internal))
        full, rest = list(f.validators), list(plan.rest)
        if any(isinstance(v, UniqueValidator) for v in full):
            full, rest = self._batch_unique(f, cells, full, rest)
        return Slot(plan.name, f, cells, full, rest, plan.validate_method, plan.key)

    def _converters(self, f: Field, raws: list[Any]) -> tuple[Converter | None, Callable]:
        if isinstance(f, RelatedField):
            resolver = RelatedResolver(f)  # type: ignore[arg-type]
            resolver.prefetch(r for r in raws if isinstance(r, str) and r != "")
            return resolver.fast, resolver.to_internal_value
        return CONVERTERS[type(f)](f), f.to_internal_value

    def _batch_unique(
        self, f: Field, cells: list[Any], full: list[Any], rest: list[Any]
    ) -> tuple[list[Any], list[Any]]:
        """Swap batchable UniqueValidators for one query each; settle clean cells at once."""
        values = [c.value if type(c) is Pending else c for c in cells if type(c) not in _ENDED]
        swap: dict[int, BatchedUnique] = {}
        for v in full:
            if isinstance(v, UniqueValidator) and BatchedUnique.supports(v, self.serializer):
                batched = BatchedUnique(v, f.source_attrs[-1])
                batched.prefetch(values)
                swap[id(v)] = batched
        full = [swap.get(id(v), v) for v in full]
        rest = [swap.get(id(v), v) for v in rest]
        if rest and all(isinstance(v, BatchedUnique) for v in rest):
            settle_unique(cells, rest)
            rest = []
        return full, rest

    # -- one row ------------------------------------------------------------------------------

    def _row(self, i: int, data: dict[str, Any], slots: list[Slot]) -> Outcome:
        ret: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for name, f, cells, full, rest, validate_method, key in slots:
            try:
                if cells is None:
                    value = f.run_validation(f.get_value(data))
                else:
                    value = cells[i]
                    if type(value) in OUTCOME_TYPES:
                        value = resolve(f, value, full)
                    elif rest:
                        run_validators(f, rest, value)
                if validate_method is not None:
                    value = validate_method(value)
            except ValidationError as exc:
                errors[name] = exc.detail
            except DjangoValidationError as exc:
                errors[name] = get_error_detail(exc)
            except SkipField:
                pass
            else:
                if key is not None:
                    ret[key] = value
                else:
                    self.serializer.set_value(ret, f.source_attrs, value)
        if errors:
            return False, errors
        return self._whole(ret)

    def _whole(self, value: dict[str, Any]) -> Outcome:
        """The serializer's own validators and ``validate()``, as ``run_validation`` runs them."""
        if not (self.run_serializer_validators or self.run_validate):
            return True, value
        try:
            if self.run_serializer_validators:
                self.serializer.run_validators(value)
            if self.run_validate:
                value = self.serializer.validate(value)
                assert value is not None, ".validate() should return the validated data"
        except (ValidationError, DjangoValidationError) as exc:
            return False, as_serializer_error(exc)
        return True, value


class Slot(NamedTuple):
    """A field's part of one chunk: converted cells (``None``: not compiled) and validators."""

    name: str
    field: Field
    cells: list[Any] | None
    full: list[Any]  # all the field's validators, unique ones batched
    rest: list[Any]  # those the fast check does not cover
    validate_method: Callable[[Any], Any] | None
    key: str | None


def resolve(f: Field, outcome: Any, validators: list[Any]) -> Any:
    """The value of a cell the fast path left to DRF's steps (or raise its error)."""
    kind = type(outcome)
    if kind is Pending:
        run_validators(f, validators, outcome.value)
        return outcome.value
    if kind is Returned:
        return outcome.value
    raise outcome.exc


def settle_unique(cells: list[Any], checks: list[BatchedUnique]) -> None:
    """Leave a clean cell as is; send one whose value exists (or is unknown) to a full run."""
    for i, cell in enumerate(cells):
        if type(cell) in OUTCOME_TYPES:
            continue
        if not all(check.is_clean(cell) for check in checks):
            cells[i] = Pending(cell)


def _raws(column: list[Any] | None, size: int) -> list[Any]:
    if column is None:
        return [empty] * size
    return [empty if cell is None else cell for cell in column]


def _rows_left_to_drf(cells: list[list[Any]]) -> list[int]:
    """Indexes of the rows with a cell the fast path left to DRF's steps."""
    outcome = OUTCOME_TYPES
    return sorted({i for column in cells for i, cell in enumerate(column) if type(cell) in outcome})


_ENDED = (Returned, Failed)
OUTCOME_TYPES = frozenset({Pending, Returned, Failed})


def convert_column(
    raws: list[Any],
    fast: Converter | None,
    check: Callable[[Any], bool] | None,
    slow: Callable[[Any], Any],
) -> list[Any]:
    """Each cell converted by ``fast`` when it can, else by DRF's own steps (``slow``)."""
    out: list[Any] = []
    append = out.append
    for raw in raws:
        value = fast(raw) if fast is not None and type(raw) is str and raw else MISS
        if value is MISS:
            append(slow(raw))
        elif check is None or check(value):
            append(value)
        else:
            append(Pending(value))
    return out


def drf_stage(f: Field, data: Any, to_internal: Callable[[Any], Any]) -> Any:
    """DRF's ``field.run_validation`` up to (not including) the validators, as an outcome."""
    try:
        if isinstance(f, CHAR_FIELDS) and (
            data == "" or (f.trim_whitespace and str(data).strip() == "")
        ):
            if not f.allow_blank:
                f.fail("blank")
            return Returned("")
        if isinstance(f, RelatedField) and data == "":
            data = None
        is_empty, data = f.validate_empty_values(data)
        if is_empty:
            return Returned(data)
        return Pending(to_internal(data))
    except (ValidationError, DjangoValidationError, SkipField) as exc:
        return Failed(exc)

"""What the column stage hands to the row loop, and DRF's own validator loop."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ValidationError
from rest_framework.fields import Field, get_error_detail

MISS: Any = object()  # a fast converter's "let DRF decide this cell"
Outcome = tuple[bool, Any]  # (True, validated data) or (False, error detail)


class Pending:
    """A converted value that still has to pass every one of the field's validators."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Returned:
    """A value DRF returns as is, without validators (an empty cell, a default)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Failed:
    """The exception DRF raised for a cell (ValidationError, Django's, or SkipField)."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


def run_validators(field: Field, validators: Iterable[Any], value: Any) -> None:
    """``Field.run_validators`` over ``validators`` instead of ``field.validators``."""
    errors: list[Any] = []
    for validator in validators:
        try:
            if getattr(validator, "requires_context", False):
                validator(value, field)
            else:
                validator(value)
        except ValidationError as exc:
            if isinstance(exc.detail, dict):
                raise
            errors.extend(exc.detail)
        except DjangoValidationError as exc:
            errors.extend(get_error_detail(exc))
    if errors:
        raise ValidationError(errors)

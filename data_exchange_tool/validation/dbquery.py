"""``field IN (…)`` for a chunk's worth of values, in as few queries as the database allows.

On PostgreSQL the values travel as one array parameter (``IN (SELECT unnest(%s::type[]))``):
for 5,000 keys against a million-row table that took 11 ms where 5,000 bound parameters took
99 ms. Elsewhere the values are split to fit the database's parameter limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import connections
from django.db.models import CharField, Field, Model, QuerySet, TextField
from django.db.models.expressions import RawSQL


def filtered_in(queryset: QuerySet, name: str, values: Iterable[Any]) -> Iterator[QuerySet]:
    """Querysets that together give ``queryset.filter(<name>__in=values)``."""
    values = list(values)
    if not values:
        return
    connection = connections[queryset.db]
    subquery = _unnest(queryset, name, values, connection)
    if subquery is not None:
        yield queryset.filter(**{f"{name}__in": subquery})
        return
    limit = connection.features.max_query_params or len(values)
    for start in range(0, len(values), limit):
        yield queryset.filter(**{f"{name}__in": values[start : start + limit]})


def fetch_in(queryset: QuerySet, name: str, keys: list[Any]) -> list[Any]:
    """``queryset.filter(name__in=keys)`` in as few queries as the database allows."""
    found: list[Any] = []
    for part in filtered_in(queryset, name, keys):
        found.extend(part)
    return found


def values_in(queryset: QuerySet, name: str, values: Iterable[Any]) -> list[Any]:
    """The ``name`` of each row of ``queryset.filter(name__in=values)``, in no order."""
    found: list[Any] = []
    for part in filtered_in(queryset, name, values):
        found.extend(part.order_by().values_list(name, flat=True))
    return found


def _unnest(queryset: QuerySet, name: str, values: list[Any], connection: Any) -> RawSQL | None:
    if connection.vendor != "postgresql":
        return None
    field = plain_field(queryset.model, name)
    db_type = field.db_type(connection) if field is not None else None
    if field is None or not db_type:
        return None
    try:
        if keeps_text(field) and all(type(v) is str for v in values):
            prepared = values
        else:
            prepared = [field.get_db_prep_value(v, connection, prepared=False) for v in values]
    except (TypeError, ValueError, ValidationError):
        return None  # let the plain lookup report what it reports
    return RawSQL(f"SELECT unnest(%s::{db_type}[])", (prepared,))


def plain_field(model: type[Model], name: str) -> Field | None:
    """The concrete, non-relational model field ``name`` (``pk`` allowed), else ``None``."""
    if "__" in name:
        return None
    opts = model._meta
    try:
        field = opts.pk if name == "pk" else opts.get_field(name)
    except FieldDoesNotExist:
        return None
    if field.is_relation or not getattr(field, "concrete", False):
        return None
    return field


def keeps_text(model_field: Field) -> bool:
    """True when the field prepares a ``str`` as itself (``CharField``, ``TextField`` and their
    plain subclasses), so a chunk's keys need no call per value."""
    cls = type(model_field)
    return any(
        isinstance(model_field, base)
        and cls.get_prep_value is base.get_prep_value
        and cls.to_python is base.to_python
        and cls.get_db_prep_value is Field.get_db_prep_value
        for base in (CharField, TextField)
    )

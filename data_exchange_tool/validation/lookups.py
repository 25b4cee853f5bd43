"""Related-field lookups and single-field uniqueness checks, one query per field per chunk.

Values are matched by the key Django itself sends to the database (``get_prep_value`` of the
model field) against the key of what the database returns. Only databases whose equality is the
same as Python's for these values (PostgreSQL and SQLite, no custom collation) may conclude that
an unmatched value does not exist; anywhere else a miss goes to DRF's own per-cell query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import Field as ModelField
from django.db.models import QuerySet
from django.utils.encoding import smart_str
from rest_framework.exceptions import ValidationError
from rest_framework.relations import PrimaryKeyRelatedField, SlugRelatedField
from rest_framework.validators import UniqueValidator

from .dbquery import fetch_in, keeps_text, plain_field, values_in
from .outcomes import MISS

TRUSTED_VENDORS = frozenset({"postgresql", "sqlite"})
QUERY_ERRORS = (TypeError, ValueError, OverflowError, DatabaseError)


def trusts_misses(queryset: QuerySet, model_field: ModelField) -> bool:
    vendor = connections[queryset.db].vendor
    return vendor in TRUSTED_VENDORS and not getattr(model_field, "db_collation", None)


def prepared_keys(
    queryset: QuerySet, model_field: ModelField, values: Iterable[Any]
) -> dict[Any, Any]:
    """``{value: key}`` for the values whose database key can be batched.

    A value the model field refuses, a text with NUL (PostgreSQL refuses it) or an integer out
    of the column's range is left to DRF's own per-cell query, which decides what it means.
    """
    prep = model_field.get_prep_value
    low, high = _integer_range(queryset, model_field)
    keys: dict[Any, Any] = {}
    text_as_is = keeps_text(model_field)
    for value in values:
        if text_as_is and type(value) is str:
            if "\x00" not in value:
                keys[value] = value
            continue
        try:
            key = prep(value)
            hash(key)
        except Exception:
            continue
        if isinstance(key, str):
            if "\x00" in key:
                continue
        elif isinstance(key, int) and not (low <= key <= high):
            continue
        keys[value] = key
    return keys


def _integer_range(queryset: QuerySet, model_field: ModelField) -> tuple[float, float]:
    ops = connections[queryset.db].ops
    try:
        low, high = ops.integer_field_range(model_field.get_internal_type())
    except (KeyError, TypeError):
        return float("-inf"), float("inf")
    return (float("-inf") if low is None else low), (float("inf") if high is None else high)


class RelatedResolver:
    """Resolves a SlugRelatedField / PrimaryKeyRelatedField for a chunk in one query."""

    def __init__(self, field: SlugRelatedField | PrimaryKeyRelatedField) -> None:
        self.field = field
        self.is_slug = isinstance(field, SlugRelatedField)
        self.found: dict[Any, Any] = {}
        self.queried: set[Any] = set()
        self.model_field: ModelField | None = None
        self.trust_misses = False

    @staticmethod
    def supports(field: Any) -> bool:
        if type(field) is SlugRelatedField:
            return "__" not in field.slug_field
        return type(field) is PrimaryKeyRelatedField and field.pk_field is None

    def prefetch(self, raws: Iterable[Any]) -> None:
        """Look up every distinct cell value of the chunk at once."""
        queryset = self.field.get_queryset()
        name = self.field.slug_field if self.is_slug else "pk"
        model_field = plain_field(queryset.model, name)
        if model_field is None:
            return
        keys = set(prepared_keys(queryset, model_field, set(raws)).values())
        try:
            objects = fetch_in(queryset, name, list(keys)) if keys else []
        except QUERY_ERRORS:
            return
        self.model_field = model_field
        self.queried = keys
        self.trust_misses = trusts_misses(queryset, model_field)
        self.found = self._by_key(objects, model_field)

    @staticmethod
    def _by_key(objects: list[Any], model_field: ModelField) -> dict[Any, Any]:
        found: dict[Any, Any] = {}
        ambiguous = set()
        for obj in objects:
            key = model_field.get_prep_value(getattr(obj, model_field.attname))
            if key in found:
                ambiguous.add(key)
            found[key] = obj
        for key in ambiguous:
            found[key] = MISS  # DRF's .get() raises MultipleObjectsReturned; let it
        return found

    def fast(self, data: str) -> Any:
        """The object for a cell value, or MISS."""
        if self.model_field is None:
            return MISS
        try:
            key = self.model_field.get_prep_value(data)
        except Exception:
            return MISS
        return self.found.get(key, MISS)

    def to_internal_value(self, data: Any) -> Any:
        """DRF's ``to_internal_value``, answering misses from the prefetched lookup."""
        obj = self.fast(data) if isinstance(data, str) else MISS
        if obj is not MISS:
            return obj
        if self.trust_misses and self._is_clean_miss(data):
            if self.is_slug:
                self.field.fail(
                    "does_not_exist", slug_name=self.field.slug_field, value=smart_str(data)
                )
            self.field.fail("does_not_exist", pk_value=data)
        return self.field.to_internal_value(data)

    def _is_clean_miss(self, data: Any) -> bool:
        """True when the chunk's query looked for ``data`` and found nothing."""
        if not isinstance(data, str) or self.model_field is None:
            return False
        try:
            key = self.model_field.get_prep_value(data)
            return key in self.queried and key not in self.found
        except Exception:
            return False


class BatchedUnique:
    """Stands in for one ``UniqueValidator`` on a chunk, after one ``field__in`` query.

    Values the query did not cover go to the original validator, so the result is DRF's.
    """

    requires_context = True

    def __init__(self, validator: UniqueValidator, field_name: str) -> None:
        self.validator = validator
        self.field_name = field_name
        self.model_field: ModelField | None = None
        self.checked: set[Any] = set()
        self.existing: set[Any] = set()
        self.verdicts: dict[Any, bool] = {}  # value -> exists

    @staticmethod
    def supports(validator: Any, serializer: Any) -> bool:
        return (
            type(validator) is UniqueValidator
            and validator.lookup == "exact"
            and getattr(serializer, "instance", None) is None
        )

    def prefetch(self, values: Iterable[Any]) -> None:
        queryset = self.validator.queryset
        model_field = plain_field(queryset.model, self.field_name)
        if model_field is None or not trusts_misses(queryset, model_field):
            return
        keys = prepared_keys(queryset, model_field, _hashable(values))
        try:
            rows = values_in(queryset, self.field_name, list(set(keys.values())))
        except QUERY_ERRORS:
            return
        self.model_field = model_field
        self.checked = set(keys.values())
        self.existing = {model_field.get_prep_value(v) for v in rows}
        self.verdicts = {value: key in self.existing for value, key in keys.items()}

    def is_clean(self, value: Any) -> bool:
        """True when ``value`` is known, from the chunk's query, not to exist."""
        try:
            return self.verdicts.get(value) is False
        except TypeError:
            return False

    def __call__(self, value: Any, serializer_field: Any) -> None:
        key = self._key(value)
        if key is MISS or key not in self.checked:
            self.validator(value, serializer_field)
        elif key in self.existing:
            raise ValidationError(self.validator.message, code="unique")

    def _key(self, value: Any) -> Any:
        if self.model_field is None:
            return MISS
        try:
            key = self.model_field.get_prep_value(value)
            hash(key)
        except Exception:
            return MISS
        return key


def _hashable(values: Iterable[Any]) -> list[Any]:
    out = []
    for value in values:
        try:
            hash(value)
        except TypeError:
            continue
        out.append(value)
    return list(dict.fromkeys(out))

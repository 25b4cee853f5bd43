"""Fast per-cell converters for DRF's standard fields, each exactly equal to DRF where it answers.

A converter takes a non-empty ``str`` cell and returns the value DRF's ``to_internal_value``
would return, or ``MISS`` whenever it is not certain (bad input included): DRF's own code then
handles that cell, so error messages are always DRF's. ``known_check`` turns the validators whose
rule is known into one predicate; a cell that fails it is re-validated by the real validators.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from collections.abc import Callable
from typing import Any

from django.core import validators as dj
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import fields as f
from rest_framework.settings import api_settings
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from .outcomes import MISS

Converter = Callable[[str], Any]
SURROGATE = re.compile("[\ud800-\udfff]")
CHAR_FIELDS = (f.CharField, f.EmailField, f.RegexField, f.SlugField, f.URLField)


def char_converter(field: f.CharField) -> Converter:
    if field.trim_whitespace:

        def convert(raw: str) -> Any:
            value = raw.strip()
            return value if value else MISS

        return convert
    return lambda raw: raw


def integer_converter(field: f.IntegerField) -> Converter:
    limit = field.MAX_STRING_LENGTH

    def convert(raw: str) -> Any:
        if "." in raw or len(raw) > limit:
            return MISS
        try:
            return int(raw)
        except ValueError:
            return MISS

    return convert


def boolean_converter(field: f.BooleanField) -> Converter:
    table: dict[str, bool | None] = {}
    if field.allow_null:
        table.update((v, None) for v in field.NULL_VALUES if isinstance(v, str))
    table.update((v, False) for v in field.FALSE_VALUES if isinstance(v, str))
    table.update((v, True) for v in field.TRUE_VALUES if isinstance(v, str))
    get = table.get
    return lambda raw: get(raw.lower(), MISS)


def choice_converter(field: f.ChoiceField) -> Converter:
    get = field.choice_strings_to_values.get
    return lambda raw: get(raw, MISS)


def uuid_converter(field: f.UUIDField) -> Converter:
    def convert(raw: str) -> Any:
        try:
            return uuid.UUID(hex=raw)
        except ValueError:
            return MISS

    return convert


def _only_iso(formats: Any) -> bool:
    return len(formats) == 1 and str(formats[0]).lower() == f.ISO_8601


def date_converter(field: f.DateField) -> Converter | None:
    if not _only_iso(getattr(field, "input_formats", api_settings.DATE_INPUT_FORMATS)):
        return None

    def convert(raw: str) -> Any:
        try:
            parsed = parse_date(raw)
        except (ValueError, TypeError):
            return MISS
        return MISS if parsed is None else parsed

    return convert


def datetime_converter(field: f.DateTimeField) -> Converter | None:
    if not _only_iso(getattr(field, "input_formats", api_settings.DATETIME_INPUT_FORMATS)):
        return None
    zone = field.timezone if hasattr(field, "timezone") else field.default_timezone()
    enforce = field.enforce_timezone
    utc = always_utc(zone)

    def convert(raw: str) -> Any:
        try:
            parsed = parse_datetime(raw)
        except (ValueError, TypeError):
            return MISS
        if parsed is None:
            return MISS
        try:
            if zone is not None and parsed.utcoffset() is not None:
                return parsed.astimezone(zone)
            if utc and parsed.tzinfo is None:
                return parsed.replace(tzinfo=zone)  # make_aware; UTC has no gap or fold
            return enforce(parsed)
        except Exception:
            return MISS

    return convert


UTC_KEYS = frozenset({"UTC", "Etc/UTC"})


def always_utc(zone: Any) -> bool:
    """True for a zone that is UTC at every instant (no gap, no fold, no offset)."""
    if isinstance(zone, dt.timezone):
        return zone.utcoffset(None) == dt.timedelta(0)
    return getattr(zone, "key", None) in UTC_KEYS


def decimal_converter(field: f.DecimalField) -> Converter | None:
    if field.localize:
        return None
    fits = precision_check(field.max_digits, field.decimal_places)
    limit = field.MAX_STRING_LENGTH
    quantize = _quantizer(field)

    def convert(raw: str) -> Any:
        text = raw.strip()
        if not text or len(text) > limit:
            return MISS
        try:
            value = decimal.Decimal(text)
        except (ArithmeticError, ValueError):
            return MISS
        if not value.is_finite() or not fits(value):
            return MISS
        try:
            return quantize(value)
        except ArithmeticError:
            return MISS

    return convert


def _quantizer(field: f.DecimalField) -> Callable[[decimal.Decimal], decimal.Decimal]:
    """``DecimalField.quantize`` with its context taken once (the thread's, as DRF takes it)."""
    if field.decimal_places is None:
        return lambda value: value
    context = decimal.getcontext().copy()
    if field.max_digits is not None:
        context.prec = field.max_digits
    exponent = decimal.Decimal(".1") ** field.decimal_places
    rounding = field.rounding
    return lambda value: value.quantize(exponent, rounding=rounding, context=context)


def precision_check(
    max_digits: int | None, places: int | None
) -> Callable[[decimal.Decimal], bool]:
    """True when ``DecimalField.validate_precision`` would accept the value."""
    whole_max = max_digits - places if max_digits is not None and places is not None else None

    def fits(value: decimal.Decimal) -> bool:
        _sign, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        if exponent >= 0:
            total = whole = len(digits) + exponent
            decimals = 0
        elif len(digits) > -exponent:
            total = len(digits)
            whole = total + exponent
            decimals = -exponent
        else:
            total = decimals = -exponent
            whole = 0
        return not (
            (max_digits is not None and total > max_digits)
            or (places is not None and decimals > places)
            or (whole_max is not None and whole > whole_max)
        )

    return fits


CONVERTERS: dict[type, Callable[[Any], Converter | None]] = {
    **dict.fromkeys(CHAR_FIELDS, char_converter),
    f.IntegerField: integer_converter,
    f.BooleanField: boolean_converter,
    f.ChoiceField: choice_converter,
    f.UUIDField: uuid_converter,
    f.DateField: date_converter,
    f.DateTimeField: datetime_converter,
    f.DecimalField: decimal_converter,
}
if hasattr(f, "BigIntegerField"):  # DRF 3.17+
    CONVERTERS[f.BigIntegerField] = integer_converter


# -- validators whose rule is known ---------------------------------------------------------


def _rule(validator: Any) -> Callable[[Any], bool] | None:
    """A predicate equal to "``validator(value)`` raises nothing", for the known kinds."""
    kind = type(validator)
    if kind in (ProhibitSurrogateCharactersValidator,):
        return lambda v: (s := str(v)).isascii() or not SURROGATE.search(s)
    if kind is dj.ProhibitNullCharactersValidator:
        return lambda v: "\x00" not in str(v)
    limit = getattr(validator, "limit_value", None)
    if limit is None or callable(limit):
        return None
    if kind is dj.MaxLengthValidator:
        return lambda v: not len(v) > limit
    if kind is dj.MinLengthValidator:
        return lambda v: not len(v) < limit
    if kind is dj.MaxValueValidator:
        return lambda v: not v > limit
    if kind is dj.MinValueValidator:
        return lambda v: not v < limit
    return None


def text_check(validators: list[Any]) -> Callable[[str], bool] | None:
    """One inline predicate for a text field's usual validators (length, NUL, surrogates)."""
    lengths = {dj.MaxLengthValidator: None, dj.MinLengthValidator: None}
    plain = (dj.ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator)
    for validator in validators:
        kind = type(validator)
        if kind in lengths and lengths[kind] is None and type(validator.limit_value) is int:
            lengths[kind] = validator.limit_value
        elif kind not in plain:
            return None
    high = lengths[dj.MaxLengthValidator]
    low = lengths[dj.MinLengthValidator] or 0
    high = float("inf") if high is None else high
    search = SURROGATE.search

    def check(value: str) -> bool:
        return (
            low <= len(value) <= high
            and "\x00" not in value
            and (value.isascii() or not search(value))
        )

    return check


def known_check(validators: list[Any]) -> tuple[Callable[[Any], bool] | None, list[Any]]:
    """One predicate for the known validators, and the validators it does not cover."""
    rules = []
    rest = []
    for validator in validators:
        rule = _rule(validator)
        if rule is None:
            rest.append(validator)
        else:
            rules.append(rule)
    if not rules:
        return None, rest
    return _all_of(tuple(rules)), rest


def _all_of(rules: tuple[Callable[[Any], bool], ...]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        try:
            for rule in rules:
                if not rule(value):
                    return False
        except Exception:
            return False
        return True

    return check

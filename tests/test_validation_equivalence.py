"""The compiled chunk path gives exactly what DRF's ``serializer.run_validation`` gives per row.

For random and hostile cells (missing, empty, whitespace, unicode digits, NaN, huge numbers,
bad dates, offsets, NUL, surrogates, unknown related keys, existing unique values) both paths
must return the same validated values (type and repr; model instances by pk) and the same error
messages and codes for every field of every row.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
import zoneinfo
from typing import Any

import pytest
from django.db import models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from data_exchange_tool.validation import compile_serializer
from tests.testapp.models import Partner, StockRecord
from tests.testapp.serializers import ImportStockRecordSerializer

HYPOTHESIS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- comparing outcomes -------------------------------------------------------------------------


def norm_value(value: Any) -> Any:
    if isinstance(value, models.Model):
        return ("instance", type(value).__name__, value.pk)
    if isinstance(value, dict):
        return {k: norm_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm_value(v) for v in value]
    return (type(value).__name__, repr(value))


def norm_errors(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {k: norm_errors(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [norm_errors(v) for v in detail]
    assert isinstance(detail, ErrorDetail), detail
    return (str(detail), detail.code)


class Crash(Exception):
    """DRF itself raised something other than a ValidationError for a row."""


def drf_per_row(serializer_class: type, rows: list[dict[str, Any]]) -> list[Any]:
    serializer = serializer_class()
    out = []
    for row in rows:
        try:
            out.append(("ok", norm_value(serializer.run_validation(row))))
        except serializers.ValidationError as exc:
            out.append(("error", norm_errors(exc.detail)))
        except Exception as exc:
            raise Crash(type(exc)) from exc
    return out


def compiled(serializer_class: type, rows: list[dict[str, Any]]) -> list[Any]:
    plan = compile_serializer(serializer_class())
    assert plan is not None
    return [
        ("ok", norm_value(payload)) if ok else ("error", norm_errors(payload))
        for ok, payload in plan.validate(rows)
    ]


def column_wise(serializer_class: type) -> bool:
    plan = compile_serializer(serializer_class())
    return plan is not None and plan.column_wise


def compiled_columns(serializer_class: type, rows: list[dict[str, str]]) -> list[Any]:
    """The column-wise path, as a chunk of a file gives it rows (``None``: an empty cell)."""
    plan = compile_serializer(serializer_class())
    assert plan is not None
    names = {name for row in rows for name in row}
    columns = {name: [row.get(name) for row in rows] for name in names}
    return [
        ("ok", norm_value(payload)) if ok else ("error", norm_errors(payload))
        for ok, payload in plan.validate_columns(columns, len(rows))
    ]


def file_cells(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The rows as a file can hold them: text cells, an empty cell left out."""
    return [{k: v for k, v in row.items() if isinstance(v, str) and v} for row in rows]


def assert_same(serializer_class: type, rows: list[dict[str, Any]]) -> None:
    """Same outcome for every row, row by row and (for rows a file can hold) column-wise;
    where DRF crashes on a row, the chunk crashes alike."""
    matches_drf(serializer_class, rows, compiled, "")
    if column_wise(serializer_class):
        matches_drf(serializer_class, file_cells(rows), compiled_columns, " (column-wise)")


def matches_drf(serializer_class: type, rows: list[dict[str, Any]], path: Any, label: str) -> None:
    try:
        expected = drf_per_row(serializer_class, rows)
    except Crash as crash:
        with pytest.raises(crash.args[0]):
            path(serializer_class, rows)
        return
    got = path(serializer_class, rows)
    for row, want, have in zip(rows, expected, got, strict=True):
        assert have == want, f"row {row!r}{label}"


# -- hostile cells ------------------------------------------------------------------------------

NUMBERS = [
    "0",
    "-0",
    "+3",
    " 7 ",
    "1.0",
    "1.00",
    "1.5",
    "1.005",
    "1e3",
    "1E+2",
    "1e-3",
    "-1",
    "١٢٣",
    "１２",
    "1_000",
    "0x10",
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "2147483647",
    "2147483648",
    "99999999999999999999999",
    "9999999999.99",
    "10000000000.00",
    "0.001",
    ".5",
    "5.",
    "1.0 ",
    "1.000\n",
    "abc",
    "",
    " ",
    "\t",
    "1" * 1001,
    "2.0000000001",
]
BOOLEANS = [
    "true",
    "True",
    "TRUE",
    "yes",
    "Y",
    "1",
    "on",
    "off",
    "f",
    "0",
    "null",
    "NULL",
    "",
    " ",
    "2",
    "tru",
    "İ",
    "none",
]
DATETIMES = [
    "2024-01-02T03:04:05Z",
    "2024-01-02T03:04:05+05:30",
    "2024-01-02T03:04:05-0800",
    "2024-01-02 03:04",
    "2024-01-02",
    "20240102T030405",
    "2024-01-02T03:04:05.123456789",
    "2024-13-01T00:00",
    "2024-02-30T00:00:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2024-03-31T02:30:00",
    "2024-10-27T02:30:00",
    "bad",
    "",
    " 2024-01-02T03:04:05Z",
    "2024-W01-1T00:00",
    "1999-12-31T24:00:00",
]
DATES = [
    "2024-01-02",
    "20240102",
    "2024-W01-1",
    "2024-02-30",
    "2024-1-2",
    "2024-01-02T00:00",
    "0000-01-01",
    "",
    " ",
    "yesterday",
    "2024-01-02 ",
]
TEXTS = [
    "",
    " ",
    "  x  ",
    "a" * 41,
    "a" * 200,
    "x\x00y",
    "\ud800",
    "é" * 3,
    "\u3000",
    "ok",
    "EXIST1",
    " EXIST1 ",
    "exist1",
    "SKU1",
    "١٢٣",
]
PARTNERS = ["P1", "P2", "P10", "NOPE", "p1", " P1", "P1 ", "", " ", "x\x00", "1", "None"]


def cell(pool: list[str], extra: st.SearchStrategy[str] | None = None) -> st.SearchStrategy:
    options = [st.sampled_from(pool), st.text(max_size=12)]
    if extra is not None:
        options.append(extra)
    return st.one_of(*options)


def row_of(spec: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=spec)


def rows_of(spec: dict[str, st.SearchStrategy]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(row_of(spec), min_size=1, max_size=12)


decimal_text = st.decimals(allow_nan=True, allow_infinity=True).map(str)
integer_text = st.integers(min_value=-(10**25), max_value=10**25).map(str)
datetime_text = st.datetimes(timezones=st.none() | st.timezones(), allow_imaginary=True).map(
    lambda d: d.isoformat()
)

# -- the StockRecord importer serializer -----------------------------------------------------


@pytest.fixture
def stock_db(db):
    p1 = Partner.objects.create(id=101, code="P1", name="P1")
    Partner.objects.create(id=102, code="P2", name="P2")
    Partner.objects.create(id=103, code="P10", name="P10")
    for sku in ("EXIST1", "EXIST2", "SKU1"):
        StockRecord.objects.create(sku=sku, name="x", price=1, quantity=1, partner=p1)


STOCK_ROW = {
    "sku": cell([*TEXTS, "SKU2", "SKU3", "EXIST2"]),
    "name": cell(TEXTS),
    "price": cell(NUMBERS, decimal_text),
    "quantity": cell(NUMBERS, integer_text),
    "warehouse": cell(TEXTS),
    "active": cell(BOOLEANS),
    "updated_at": cell(DATETIMES, datetime_text),
    "partner": cell(PARTNERS),
}


@HYPOTHESIS
@given(rows=rows_of(STOCK_ROW))
def test_stock_record_rows_match_drf(stock_db, rows):
    assert column_wise(ImportStockRecordSerializer)
    assert_same(ImportStockRecordSerializer, rows)


@HYPOTHESIS
@given(
    rows=st.lists(
        row_of(
            {
                k: st.sampled_from(v)
                for k, v in {
                    "sku": ["SKU2", "EXIST1", "SKU2", "  SKU3 "],
                    "name": ["n"],
                    "price": ["1.00", "12.5"],
                    "quantity": ["1", "2"],
                    "partner": ["P1", "P2", "NOPE"],
                }.items()
            }
        ),
        min_size=1,
        max_size=20,
    )
)
def test_mostly_valid_rows_with_duplicates_and_existing_keys(stock_db, rows):
    assert_same(ImportStockRecordSerializer, rows)


def test_none_values_match_drf(stock_db):
    assert_same(ImportStockRecordSerializer, [dict.fromkeys(STOCK_ROW)])


# -- the other field types, with options, hooks and validators ------------------------------


def no_thirteen(value: Any) -> None:
    if value == 13:
        raise serializers.ValidationError("Thirteen is unlucky.", code="unlucky")


class EveryFieldSerializer(serializers.Serializer):
    code = serializers.CharField(
        min_length=2, max_length=5, allow_blank=True, trim_whitespace=False
    )
    label = serializers.CharField(required=False, default="dflt", allow_null=True)
    count = serializers.IntegerField(
        min_value=-5, max_value=10**20, required=False, validators=[no_thirteen]
    )
    big = serializers.BigIntegerField(required=False, allow_null=True)
    amount = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=decimal.Decimal(-1), required=False
    )
    loose = serializers.DecimalField(
        max_digits=None,
        decimal_places=1,
        allow_null=True,
        rounding=decimal.ROUND_HALF_UP,
        required=False,
    )
    ratio = serializers.DecimalField(max_digits=4, decimal_places=None, required=False)
    flag = serializers.BooleanField(allow_null=True, required=False)
    day = serializers.DateField(required=False)
    moment = serializers.DateTimeField(
        required=False, default_timezone=zoneinfo.ZoneInfo("Europe/Paris")
    )
    naive = serializers.DateTimeField(required=False, default_timezone=datetime.UTC)
    colour = serializers.ChoiceField(
        choices=[(1, "one"), (2, "two"), ("r", "red")], allow_blank=True, required=False
    )
    email = serializers.EmailField(required=False)
    token = serializers.UUIDField(required=False)
    nested = serializers.CharField(source="meta.note", required=False)
    partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.filter(code__startswith="P1"), required=False, allow_null=True
    )
    partner_code = serializers.SlugRelatedField(
        slug_field="code", queryset=Partner.objects.all(), source="other", required=False
    )

    def validate_code(self, value: str) -> str:
        if value == "boom":
            raise serializers.ValidationError("No booms.", code="boom")
        return value.upper()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("count") == 7 and attrs.get("flag") is False:
            raise serializers.ValidationError("Seven needs a flag.", code="seven")
        return attrs


UUIDS = [
    str(uuid.UUID(int=5)),
    uuid.UUID(int=6).hex,
    "{" + str(uuid.UUID(int=7)) + "}",
    "urn:uuid:" + str(uuid.UUID(int=8)),
    "not-a-uuid",
    "",
    "1234",
]

EVERY_ROW = {
    "code": cell([*TEXTS, "boom", "ab", " ab ", "abcdef"]),
    "label": cell(TEXTS),
    "count": cell([*NUMBERS, "13", "7", "-6"], integer_text),
    "big": cell(NUMBERS, integer_text),
    "amount": cell([*NUMBERS, "999.99", "999.995", "-1.01"], decimal_text),
    "loose": cell([*NUMBERS, "0.05", "0.15", "-0.05"], decimal_text),
    "ratio": cell([*NUMBERS, "12.34", "1234", "0.00001"], decimal_text),
    "flag": cell(BOOLEANS),
    "day": cell(DATES, st.dates().map(str)),
    "moment": cell(DATETIMES, datetime_text),
    "naive": cell(DATETIMES, datetime_text),
    "colour": cell(["1", "2", "r", "R", "3", "", " 1", "one"]),
    "email": cell(["a@b.co", " a@b.co ", "a@", "@b", "", "a@b.co\x00"]),
    "token": cell(UUIDS, st.uuids().map(str)),
    "nested": cell(TEXTS),
    "partner": cell(
        [
            "101",
            "102",
            "103",
            "999",
            "abc",
            "1.0",
            "١٠١",
            " 101",
            "101 ",
            "True",
            "-1",
            "99999999999999999999",
            "",
        ]
    ),
    "partner_code": cell(PARTNERS),
}


@HYPOTHESIS
@given(rows=rows_of(EVERY_ROW))
def test_every_field_type_matches_drf(stock_db, rows):
    assert_same(EveryFieldSerializer, rows)


def test_every_field_none_matches_drf(stock_db):
    assert_same(EveryFieldSerializer, [dict.fromkeys(EVERY_ROW), {}])

"""RowValidator: batched lookups, DRF's messages, and (opt-in) its throughput.

``DATA_EXCHANGE_BENCH=1 pytest tests/test_validation.py -k bench -s`` prints rows/s for a
5,000-row StockRecord chunk (set ``DATA_EXCHANGE_BENCH_PROFILE=1`` for a pyinstrument profile).
"""

from __future__ import annotations

import datetime
import os
import time
from decimal import Decimal

import pytest
from rest_framework import serializers

from data_exchange_tool.options import ImporterOptions
from data_exchange_tool.registry import get_importer
from data_exchange_tool.validation import CellError, RowValidator, compile_serializer
from tests.testapp.models import Partner, StockRecord
from tests.testapp.serializers import ImportStockRecordSerializer

IMPORTER = "testapp.StockRecordImportJob"
UPSERT = "testapp.StockRecordUpsertImportJob"
FIELDS = ("sku", "name", "price", "quantity", "warehouse", "active", "updated_at", "partner")
COLUMNS = {n: n.upper() for n in FIELDS}


def stock_rows(n: int, start: int = 0, partners: int = 10) -> list[tuple[int, int, dict[str, str]]]:
    return [
        (
            i + 2,
            0,
            {
                "sku": f"SKU{i:07d}",
                "name": f"Item {i}",
                "price": f"{i % 1000}.{i % 100:02d}",
                "quantity": str(i % 7),
                "warehouse": "W1",
                "active": "true" if i % 2 else "false",
                "updated_at": "2024-01-02T03:04:05Z",
                "partner": f"P{i % partners}",
            },
        )
        for i in range(start, start + n)
    ]


def validator(importer: str = IMPORTER, **kw) -> RowValidator:
    return RowValidator(get_importer(importer), COLUMNS, **kw)


def importer_for(serializer_class: type) -> ImporterOptions:
    return ImporterOptions("testapp.Custom", StockRecord, serializer_class)


def drf_errors(serializer_class: type, rows: list) -> list[tuple[int, str, str, str]]:
    """What DRF's own ``run_validation`` says about each row, flattened like CellError."""
    serializer = serializer_class()
    out = []
    for row_number, _extra, data in rows:
        try:
            serializer.run_validation(data)
        except serializers.ValidationError as exc:
            for name, messages in exc.detail.items():
                out += [(row_number, name, m.code, str(m)) for m in messages]
    return out


def summary(errors: list[CellError]) -> list[tuple[int, str, str, str]]:
    return [(e.row_number, e.field, e.code, e.message) for e in errors]


@pytest.fixture
def partners(db):
    return [Partner.objects.create(code=f"P{i}", name=f"P{i}") for i in range(10)]


def test_one_query_per_related_field_and_unique_field_per_chunk(
    partners, django_assert_num_queries
):
    rows = stock_rows(300)
    with django_assert_num_queries(2):  # partner codes, existing skus
        result = validator().validate(rows)
    assert len(result.valid) == 300 and not result.errors
    number, data = result.valid[3]
    assert number == 5
    assert data["partner"] == partners[3] and isinstance(data["partner"], Partner)
    assert data["price"] == Decimal("3.03") and str(data["price"]) == "3.03"
    assert data["updated_at"] == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert (data["quantity"], data["active"]) == (3, True)


def test_upsert_importer_skips_the_unique_query(partners, django_assert_num_queries):
    StockRecord.objects.create(sku="SKU0000001", name="x", price=1, quantity=1, partner=partners[0])
    with django_assert_num_queries(1):
        result = validator(UPSERT).validate(stock_rows(50))
    assert len(result.valid) == 50


def bad_rows() -> list[tuple[int, int, dict[str, str]]]:
    rows = stock_rows(8)
    rows[0][2]["partner"] = "NOPE"
    rows[1][2]["sku"] = "TAKEN"
    rows[2][2]["price"] = "1.005"
    rows[3][2]["quantity"] = "-5"
    rows[4][2]["active"] = "maybe"
    rows[5][2]["updated_at"] = "2024-02-30T00:00:00"
    rows[6][2].pop("name")
    rows[7][2]["sku"] = "x" * 41
    rows[7][2]["name"] = "a\x00b"
    return rows


def test_errors_are_drfs_messages_and_codes(partners, django_assert_max_num_queries):
    StockRecord.objects.create(sku="TAKEN", name="x", price=1, quantity=1, partner=partners[0])
    rows = bad_rows()
    expected = drf_errors(ImportStockRecordSerializer, rows)
    with django_assert_max_num_queries(2):
        result = validator().validate(rows)
    assert summary(result.errors) == expected
    assert result.invalid_rows == 8 and not result.valid
    assert expected[:2] == [
        (2, "partner", "does_not_exist", "Object with code=NOPE does not exist."),
        (3, "sku", "unique", "stock record with this sku already exists."),
    ]
    assert result.errors[0].column == "PARTNER" and result.errors[0].value == "NOPE"


def test_extra_values_and_max_errors_keep_row_order(partners):
    rows = stock_rows(4)
    rows[1] = (rows[1][0], 2, rows[1][2])
    rows[2][2]["price"] = "x"
    rows[3][2]["price"] = "y"
    result = validator(max_errors=2).validate(rows)
    assert [number for number, _ in result.valid] == [2]
    assert [(e.row_number, e.code) for e in result.errors] == [(3, "extra_values"), (4, "invalid")]
    assert result.invalid_rows == 3


class LimitedPartnerSerializer(serializers.Serializer):
    partner = serializers.PrimaryKeyRelatedField(
        queryset=Partner.objects.filter(code__in=["P1", "P2"]), allow_null=True
    )
    by_id = serializers.SlugRelatedField(
        slug_field="id", queryset=Partner.objects.all(), required=False
    )


def test_related_fields_respect_queryset_types_and_null(partners, django_assert_num_queries):
    p1, p3 = partners[1], partners[3]
    rows = [
        (2, 0, {"partner": str(p1.pk), "by_id": str(p3.pk)}),
        (3, 0, {"partner": str(p3.pk)}),  # outside the field's queryset
        (4, 0, {"partner": "abc", "by_id": "abc"}),
        (5, 0, {"partner": ""}),
        (6, 0, {"by_id": "999999"}),
    ]
    expected = drf_errors(LimitedPartnerSerializer, rows)
    with django_assert_num_queries(2):
        result = RowValidator(importer_for(LimitedPartnerSerializer), {}).validate(rows)
    assert summary(result.errors) == expected
    assert set(expected) >= {
        (3, "partner", "does_not_exist", f'Invalid pk "{p3.pk}" - object does not exist.'),
        (4, "partner", "incorrect_type", "Incorrect type. Expected pk value, received str."),
        (4, "by_id", "invalid", "Invalid value."),
        (6, "partner", "required", "This field is required."),
    }
    assert result.valid == [(2, {"partner": p1, "by_id": p3}), (5, {"partner": None})]


class OwnInternalValueSerializer(ImportStockRecordSerializer):
    def to_internal_value(self, data):
        return super().to_internal_value({**data, "name": data.get("name", "").title()})


class ManyPartnersSerializer(serializers.Serializer):
    partners = serializers.SlugRelatedField(
        slug_field="code", queryset=Partner.objects.all(), many=True
    )
    note = serializers.CharField(max_length=3)


def test_serializers_that_cannot_be_compiled_fall_back(partners):
    assert compile_serializer(OwnInternalValueSerializer()) is None
    rows = stock_rows(3)
    result = RowValidator(importer_for(OwnInternalValueSerializer), COLUMNS).validate(rows)
    assert [data["name"] for _, data in result.valid] == ["Item 0", "Item 1", "Item 2"]

    plan = compile_serializer(ManyPartnersSerializer())
    assert plan is not None and [p.compiled for p in plan.fields] == [False, True]
    rows = [(2, 0, {"partners": ["P1", "P2"], "note": "abc"}), (3, 0, {"partners": ["NO"]})]
    expected = drf_errors(ManyPartnersSerializer, rows)
    result = RowValidator(importer_for(ManyPartnersSerializer), {}).validate(rows)
    assert summary(result.errors) == expected
    assert result.valid == [(2, {"partners": partners[1:3], "note": "abc"})]


@pytest.mark.skipif(not os.environ.get("DATA_EXCHANGE_BENCH"), reason="set DATA_EXCHANGE_BENCH=1")
@pytest.mark.django_db
def test_bench_rows_per_second(partners):
    StockRecord.objects.create(sku="OTHER", name="x", price=1, quantity=1, partner=partners[0])
    rows = stock_rows(5000)
    validator().validate(rows[:50])  # warm up
    profile = os.environ.get("DATA_EXCHANGE_BENCH_PROFILE")
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    best = float("inf")
    for _ in range(int(os.environ.get("DATA_EXCHANGE_BENCH_REPEAT", "3"))):
        started = time.perf_counter()
        result = validator().validate(rows)
        best = min(best, time.perf_counter() - started)
    if profile:
        profiler.stop()
        show_all = bool(os.environ.get("DATA_EXCHANGE_BENCH_ALL"))
        print(profiler.output_text(unicode=True, color=False, show_all=show_all))
    assert len(result.valid) == 5000, result.errors[:3]
    print(f"\n5000 rows validated in {best:.3f} s: {5000 / best:,.0f} rows/s per core")

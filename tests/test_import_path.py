"""The import path: rows validated once at preview, checked again against the database at import,
written with COPY on PostgreSQL (bulk_create elsewhere), exactly once per chunk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, transaction

from data_exchange_tool import chunkfiles, registry, services, writers
from data_exchange_tool.models import ImportChunk, ImportJob
from data_exchange_tool.options import importer_options
from data_exchange_tool.services import chunk_work, importing, transitions
from data_exchange_tool.states import ChunkState, JobState
from data_exchange_tool.storage import import_storage
from data_exchange_tool.validation import recheck
from tests.testapp.models import Partner, StockRecord

HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
IMPORTER = "testapp.StockRecordImportJob"
CHUNK_SIZE = 7
COLUMNS = ["sku", "name", "price", "quantity", "warehouse", "active", "updated_at", "partner_id"]


def csv_rows(n: int, start: int = 0, partner: str = "P1") -> str:
    return "".join(
        f"SKU{i:05d},Item {i},{i}.50,{i % 7},W1,true,2024-01-02T03:04:05Z,{partner}\n"
        for i in range(start, start + n)
    )


AWKWARD_ROWS = [
    # decimals, datetimes with offsets, booleans, empty cells left to model defaults
    "A01,Plain,1234567890.99,0,W1,true,2024-03-10T01:30:00+05:30,P1",
    "A02,Small,0.01,1,,false,2024-01-02 03:04:05-08:00,P2",
    "A03,Defaults,7,2,,,,P1",
    "A04,Zulu,10.5,3,W2,1,2024-06-01T00:00:00Z,P2",
    "A05,Naive time,99.9,4,W3,0,2024-12-31T23:59:59.123456,P1",
    # text COPY must escape: quotes, tabs, newlines, backslashes, the NULL marker, unicode
    'A06,"He said ""hi""",1,5,W1,True,,P2',
    'A07,"tab\there",1,6,"back\\slash",False,,P1',
    'A08,"line one\nline two\r\nline three",1,7,W1,yes,,P2',
    "A09,\\N,1,8,\\.,no,,P1",
    "A10,Müller – 日本語 🚀 ü,1,9,Zürich,on,,P2",
    'A11," leading and trailing ",1,10,W1,off,,P1',
    "A12,\\\\server\\share,3.30,11,W1,t,2024-02-29T12:00:00+00:00,P2",
]


@pytest.fixture(autouse=True)
def _local_storage(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = CHUNK_SIZE


def use_revalidation(monkeypatch) -> None:
    model, options = registry._importers[IMPORTER]
    changed = dataclasses.replace(options, revalidate_on_import=True)
    monkeypatch.setitem(registry._importers, IMPORTER, (model, changed))


@pytest.fixture
def revalidate(monkeypatch):
    """Give the importer ``Meta.revalidate_on_import = True``."""
    use_revalidation(monkeypatch)


@pytest.fixture
def full_validations(monkeypatch) -> list[int]:
    """Indexes of the chunks the import (not the preview) validated again in full."""
    calls: list[int] = []
    original = chunk_work.validate_chunk_rows

    def spy(job, chunk):
        if job.state == JobState.IMPORT_IN_PROGRESS:
            calls.append(chunk.index)
        return original(job, chunk)

    monkeypatch.setattr(chunk_work, "validate_chunk_rows", spy)
    return calls


@pytest.fixture
def copies(monkeypatch) -> list[int]:
    """Row counts of the chunks written with COPY."""
    written: list[int] = []
    original = writers.pgcopy.copy_insert

    def spy(model, objects):
        done = original(model, objects)
        if done:
            written.append(len(objects))
        return done

    monkeypatch.setattr(writers.pgcopy, "copy_insert", spy)
    return written


@pytest.fixture
def arrow_copies(monkeypatch) -> list[int]:
    """Row counts of the chunks written with one COPY of their stored columns."""
    written: list[int] = []
    original = writers.pgcopy.copy_arrow

    def spy(model, table, absent=()):
        done = original(model, table, absent)
        if done:
            written.append(table.num_rows)
        return done

    monkeypatch.setattr(writers.pgcopy, "copy_arrow", spy)
    return written


def previewed(run_on_commit, text: str) -> ImportJob:
    job = run_on_commit(services.create_job, IMPORTER, io.BytesIO(text.encode()), name="s.csv")
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_SUCCEEDED, job.error_summary
    return job


def confirmed(run_on_commit, job: ImportJob) -> ImportJob:
    run_on_commit(services.confirm_import, job.pk)
    job.refresh_from_db()
    return job


def table_rows() -> list[dict[str, Any]]:
    return list(StockRecord.objects.order_by("sku").values(*COLUMNS))


def valid_file_exists(job: ImportJob) -> bool:
    key = chunkfiles.valid_key(job.chunks.get(index=0).storage_key)
    return import_storage().storage.exists(key)


# -- the same values as the bulk path --------------------------------------------------------------


def written_by_bulk_create(run_on_commit, monkeypatch, text: str) -> list[dict[str, Any]]:
    """The rows the serializer validates in full and ``bulk_create`` writes, on an empty table."""
    StockRecord.objects.all().delete()
    use_revalidation(monkeypatch)
    monkeypatch.setattr(writers.pgcopy, "copy_insert", lambda model, objects: False)
    monkeypatch.setattr(writers.pgcopy, "copy_arrow", lambda model, table, absent=(): False)
    job = confirmed(run_on_commit, previewed(run_on_commit, text))
    assert job.state == JobState.IMPORT_SUCCEEDED, job.error_summary
    return table_rows()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["stored columns", "validated again"])
def test_copied_rows_equal_full_validation_and_bulk_create(
    partners, run_on_commit, monkeypatch, copies, arrow_copies, full_validations, path
):
    """COPY of the preview's stored columns (defaults filled in where cells were empty), and
    COPY of rows validated again, write what the serializer and ``bulk_create`` write."""
    text = HEADER + "\n".join(AWKWARD_ROWS) + "\n"
    if path == "validated again":
        use_revalidation(monkeypatch)
    job = confirmed(run_on_commit, previewed(run_on_commit, text))
    assert job.state == JobState.IMPORT_SUCCEEDED, job.error_summary
    if path == "stored columns":
        assert full_validations == [], "the import trusted the rows validated at preview"
    if connection.vendor == "postgresql":
        used = arrow_copies if path == "stored columns" else copies
        assert used == [7, 5], "both chunks were written with COPY"
    fast = table_rows()

    assert written_by_bulk_create(run_on_commit, monkeypatch, text) == fast
    assert len(fast) == len(AWKWARD_ROWS)

    by_sku = {row["sku"]: row for row in fast}
    assert by_sku["A01"]["price"] == Decimal("1234567890.99")
    assert by_sku["A01"]["updated_at"] == dt.datetime(2024, 3, 9, 20, 0, tzinfo=dt.UTC)
    assert by_sku["A02"]["updated_at"] == dt.datetime(2024, 1, 2, 11, 4, 5, tzinfo=dt.UTC)
    assert by_sku["A05"]["updated_at"].microsecond == 123456
    assert (by_sku["A03"]["warehouse"], by_sku["A03"]["active"]) == ("", True)
    assert by_sku["A03"]["updated_at"] is None
    assert by_sku["A06"]["name"] == 'He said "hi"'
    assert (by_sku["A07"]["name"], by_sku["A07"]["warehouse"]) == ("tab\there", "back\\slash")
    assert by_sku["A08"]["name"] == "line one\nline two\r\nline three"
    assert (by_sku["A09"]["name"], by_sku["A09"]["warehouse"]) == ("\\N", "\\.")
    assert by_sku["A10"]["name"] == "Müller – 日本語 🚀 ü"
    assert by_sku["A12"]["name"] == "\\\\server\\share"
    assert [by_sku[f"A{i:02d}"]["active"] for i in (4, 5, 8, 9, 10, 11)] == [
        True, False, True, False, True, False,
    ]  # fmt: skip


@pytest.mark.django_db
def test_preview_stores_the_validated_rows_beside_the_chunk(partners, run_on_commit):
    job = previewed(run_on_commit, HEADER + csv_rows(3))
    chunk = job.chunks.get()
    plan = chunk_work.import_plan(job)
    stored = chunkfiles.load_validated(plan, chunk.storage_key)
    assert stored is not None
    assert stored.row_numbers == [2, 3, 4]
    row_number, data = stored.records()[1]
    assert row_number == 3
    assert data == {
        "sku": "SKU00001",
        "name": "Item 1",
        "price": Decimal("1.50"),
        "quantity": 1,
        "warehouse": "W1",
        "active": True,
        "updated_at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "partner_id": partners[0].pk,
    }


# -- what the database changed since the preview ---------------------------------------------------


@pytest.mark.django_db
def test_related_row_deleted_after_preview_fails_its_chunk_with_drf_message(
    partners, run_on_commit, full_validations
):
    text = HEADER + csv_rows(7) + csv_rows(2, start=7, partner="P2") + csv_rows(3, start=9)
    job = previewed(run_on_commit, text)
    Partner.objects.filter(code="P2").delete()

    job = confirmed(run_on_commit, job)
    assert job.state == JobState.IMPORT_FAILED
    assert full_validations == []
    errors = list(job.row_errors.filter(phase="import").order_by("row_number"))
    assert [(e.row_number, e.column, e.field, e.code, e.message, e.value) for e in errors] == [
        (9, "partner", "partner", "does_not_exist", "Object with code=P2 does not exist.", "P2"),
        (10, "partner", "partner", "does_not_exist", "Object with code=P2 does not exist.", "P2"),
    ]
    failed = job.chunks.get(index=1)
    assert (failed.import_state, failed.imported_rows) == (ChunkState.FAILED, 0)
    assert set(StockRecord.objects.values_list("sku", flat=True)) == {
        f"SKU{i:05d}" for i in range(7)
    }, "chunk 0 committed; nothing of chunk 1 was written"


@pytest.mark.django_db
def test_related_row_recreated_after_preview_is_found_again_by_its_code(partners, run_on_commit):
    job = previewed(run_on_commit, HEADER + csv_rows(3, partner="P2"))
    Partner.objects.filter(code="P2").delete()
    again = Partner.objects.create(code="P2", name="P2 again")

    job = confirmed(run_on_commit, job)
    assert job.state == JobState.IMPORT_SUCCEEDED, job.error_summary
    assert set(StockRecord.objects.values_list("partner_id", flat=True)) == {again.pk}


@pytest.mark.django_db
def test_key_inserted_after_preview_is_reported_on_its_row(
    partners, run_on_commit, full_validations
):
    job = previewed(run_on_commit, HEADER + csv_rows(10))
    StockRecord.objects.create(
        sku="SKU00008", name="Meanwhile", price=1, quantity=1, partner=partners[0]
    )

    job = confirmed(run_on_commit, job)
    assert job.state == JobState.IMPORT_FAILED
    assert full_validations == []
    error = job.row_errors.get(phase="import")
    assert (error.row_number, error.column, error.code, error.value) == (
        10,
        "sku",
        "unique",
        "SKU00008",
    )
    assert error.message == "stock record with this sku already exists."
    assert StockRecord.objects.count() == 1 + 7


# -- full validation when asked for, or when nothing was stored ------------------------------------


@pytest.mark.django_db
def test_revalidate_on_import_runs_the_full_serializer(
    partners, run_on_commit, revalidate, full_validations
):
    job = previewed(run_on_commit, HEADER + csv_rows(10))
    assert not valid_file_exists(job), "nothing is stored when the import validates again"
    StockRecord.objects.create(
        sku="SKU00008", name="Meanwhile", price=1, quantity=1, partner=partners[0]
    )

    job = confirmed(run_on_commit, job)
    assert full_validations == [0, 1]
    assert job.state == JobState.IMPORT_FAILED
    assert (
        job.row_errors.get(phase="import").message == "stock record with this sku already exists."
    )


@pytest.mark.django_db
def test_missing_validated_rows_fall_back_to_full_validation(
    partners, run_on_commit, full_validations
):
    job = previewed(run_on_commit, HEADER + csv_rows(3))
    import_storage().storage.delete(chunkfiles.valid_key(job.chunks.get().storage_key))

    job = confirmed(run_on_commit, job)
    assert (job.state, job.imported_rows) == (JobState.IMPORT_SUCCEEDED, 3)
    assert full_validations == [0]


def test_revalidate_on_import_is_an_importer_meta_option():
    def meta(**extra):
        return SimpleNamespace(
            _meta=SimpleNamespace(
                label="app.Importer", proxy=True, target_model="testapp.StockRecord",
                serializer_class="tests.testapp.serializers.ImportStockRecordSerializer", **extra,
            )
        )  # fmt: skip

    assert importer_options(meta()).revalidate_on_import is False
    assert importer_options(meta(revalidate_on_import=True)).revalidate_on_import is True
    with pytest.raises(Exception, match="revalidate_on_import must be True or False"):
        importer_options(meta(revalidate_on_import="yes"))


# -- exactly once ----------------------------------------------------------------------------------


def started_import(job: ImportJob) -> int:
    """Move a previewed job to IMPORT_IN_PROGRESS without running its chunks."""
    fence = job.fence + 1
    assert transitions.move(job.pk, JobState.IMPORT_IN_PROGRESS, fence=fence)
    return fence


@pytest.mark.django_db
def test_chunk_task_run_twice_writes_once(partners, run_on_commit):
    job = previewed(run_on_commit, HEADER + csv_rows(10))
    fence = started_import(job)
    chunk = job.chunks.get(index=1)

    assert importing.import_chunk(job.pk, chunk.pk, fence) == "written"
    assert importing.import_chunk(job.pk, chunk.pk, fence) == "already done"
    assert StockRecord.objects.count() == 3
    chunk.refresh_from_db()
    assert (chunk.import_state, chunk.imported_rows, chunk.import_fence) == (
        ChunkState.DONE,
        3,
        fence,
    )


class CrashBeforeCommit:
    """Fault hooks: the first chunk write dies after its rows were sent, before its commit."""

    crashed = False

    @classmethod
    def before_chunk_commit(cls, **kwargs: Any) -> None:
        if not cls.crashed:
            cls.crashed = True
            raise RuntimeError("worker died")


@pytest.mark.django_db
def test_chunk_that_dies_before_commit_leaves_nothing_and_is_written_once_on_retry(
    partners, run_on_commit, settings
):
    job = previewed(run_on_commit, HEADER + csv_rows(10))
    fence = started_import(job)
    chunk = job.chunks.get(index=0)
    settings.DATA_EXCHANGE_FAULT_HOOKS = f"{__name__}.CrashBeforeCommit"
    CrashBeforeCommit.crashed = False

    with pytest.raises(RuntimeError, match="worker died"):
        importing.import_chunk(job.pk, chunk.pk, fence)
    assert StockRecord.objects.count() == 0
    assert ImportChunk.objects.get(pk=chunk.pk).import_state == ChunkState.PENDING

    assert importing.import_chunk(job.pk, chunk.pk, fence) == "written"
    assert importing.import_chunk(job.pk, chunk.pk, fence) == "already done"
    assert StockRecord.objects.count() == 7


# every column given, so the import copies the stored columns as they are
COMPLETE_ROWS = [
    "C01,Plain,1234567890.99,0,W1,true,2024-03-10T01:30:00+05:30,P1",
    'C02,"He said ""hi"", twice",0.01,1,"a,b",false,2024-01-02 03:04:05-08:00,P2',
    'C03,"line one\nline two\r\nline three",-7,2,"back\\slash",1,2024-12-31T23:59:59.123456,P1',
    "C04,\\N,10.5,3,\\.,0,2024-06-01T00:00:00Z,P2",
    "C05,Müller – 日本語 🚀 ü,99.9,4,Zürich,yes,2024-02-29T12:00:00+00:00,P1",
    'C06," leading and trailing ",3.30,5,"""",no,2024-01-01T00:00:00Z,P2',
    "C07,NULL,0,6,,on,2024-01-01T00:00:00.000001Z,P1",
    "C08,\\\\server\\share,1,7,W\tTab,off,2024-07-01T12:00:00-00:30,P2",
]


@pytest.mark.django_db
def test_stored_columns_copied_as_they_are_equal_full_validation_and_bulk_create(
    partners, run_on_commit, monkeypatch, arrow_copies, full_validations
):
    text = HEADER + "\n".join(COMPLETE_ROWS) + "\n"
    job = confirmed(run_on_commit, previewed(run_on_commit, text))
    assert job.state == JobState.IMPORT_SUCCEEDED, job.error_summary
    assert full_validations == []
    if connection.vendor == "postgresql":
        assert arrow_copies == [7, 1], "both chunks were copied from their stored columns"
    fast = table_rows()

    assert written_by_bulk_create(run_on_commit, monkeypatch, text) == fast
    by_sku = {row["sku"]: row for row in fast}
    assert by_sku["C02"]["name"] == 'He said "hi", twice'
    assert by_sku["C03"]["name"] == "line one\nline two\r\nline three"
    assert by_sku["C03"]["price"] == Decimal("-7.00")
    assert (by_sku["C04"]["name"], by_sku["C04"]["warehouse"]) == ("\\N", "\\.")
    assert (by_sku["C06"]["name"], by_sku["C06"]["warehouse"]) == ("leading and trailing", '"')
    assert (by_sku["C07"]["name"], by_sku["C07"]["warehouse"]) == ("NULL", "")
    assert by_sku["C07"]["updated_at"] == dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)
    assert by_sku["C08"]["updated_at"] == dt.datetime(2024, 7, 1, 12, 30, tzinfo=dt.UTC)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("prices", "copied"),
    [(["1.00", "-2.5", "3"], True), (["1.005"], False), (["1E+2"], False)],
)
def test_decimal_text_is_copied_only_when_the_column_keeps_it_exactly(partners, prices, copied):
    import pyarrow as pa

    if connection.vendor != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    n = len(prices)
    table = pa.table(
        {
            "sku": [f"D{i}" for i in range(n)],
            "name": ["x"] * n,
            "price": pa.array(prices, pa.string()),
            "quantity": [1] * n,
            "warehouse": [""] * n,
            "active": [True] * n,
            "updated_at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
            "partner_id": [partners[0].pk] * n,
        }
    )
    with transaction.atomic():
        assert writers.pgcopy.copy_arrow(StockRecord, table) is copied
    assert sorted(StockRecord.objects.values_list("price", flat=True)) == (
        sorted(Decimal(p) for p in prices) if copied else []
    )


@pytest.mark.parametrize(
    ("text", "copied"),
    [(str(uuid.UUID(int=0xABC)), True), (str(uuid.UUID(int=0xABC)).upper(), False), ("5", False)],
)
def test_uuid_text_is_sent_as_is_only_in_its_canonical_form(text, copied):
    import pyarrow as pa
    from django.db import models

    assert writers.pgcopy._sends_as_is(models.UUIDField(), pa.array([text, None])) is copied


# -- the writer ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_database_error_during_copy_names_the_row(partners):
    options = registry.get_importer(IMPORTER)
    serializer = options.serializer_class()
    base = {"name": "x", "price": Decimal("1.00"), "quantity": 1, "partner_id": partners[0].pk}
    StockRecord.objects.create(sku="K3", **base)
    rows = [(2, {**base, "sku": "K1"}), (3, {**base, "sku": "K2"}), (4, {**base, "sku": "K3"})]
    with transaction.atomic(), pytest.raises(writers.RowWriteError) as caught:
        writers.write_rows(options, serializer, rows)
    assert caught.value.row_number == 4
    assert "refused" in caught.value.message
    assert list(StockRecord.objects.values_list("sku", flat=True)) == ["K3"]


@pytest.mark.django_db
def test_related_objects_and_foreign_key_values_write_the_same_rows(partners):
    options = registry.get_importer(IMPORTER)
    serializer = options.serializer_class()
    base = {"name": "x", "price": Decimal("1.00"), "quantity": 1}
    with transaction.atomic():
        writers.write_rows(options, serializer, [(2, {**base, "sku": "O", "partner": partners[1]})])
        writers.write_rows(
            options, serializer, [(2, {**base, "sku": "I", "partner_id": partners[1].pk})]
        )
    (one, other) = [{k: v for k, v in r.items() if k != "sku"} for r in table_rows()]
    assert one == other
    assert one["warehouse"] == "" and one["active"] is True


# -- the stored file -------------------------------------------------------------------------------


def test_stored_values_keep_their_types_and_tell_missing_from_none():
    plan = recheck.Plan(model=StockRecord)
    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    rows = [
        (2, {"a": Decimal("1.10"), "b": when, "c": True, "d": None, "e": "x\ty", "f": 2**70}),
        (3, {"a": Decimal("-0.000"), "c": False, "d": 5, "g": uuid.UUID(int=7), "h": {"k": [1]}}),
        (4, {"i": dt.date(2024, 2, 29), "j": dt.time(1, 2, 3), "k": dt.timedelta(days=2)}),
    ]
    stored = chunkfiles.validated.decode(plan, chunkfiles.validated.encode(plan, rows))
    assert stored is not None
    assert stored.records() == rows
    (_r, first), (_s, second), _third = stored.records()
    assert first["b"] == when and first["b"].utcoffset() == dt.timedelta(0)
    assert str(second["a"]) == "-0.000"


@pytest.mark.parametrize("value", [object(), dt.time(1, tzinfo=dt.UTC), {"k": (1, 2)}, Decimal(1)])
def test_values_that_cannot_be_stored_exactly_are_refused(value):
    plan = recheck.Plan(model=StockRecord)
    rows = [(2, {"a": value}), (3, {"a": 1 if isinstance(value, Decimal) else None})]
    with pytest.raises(chunkfiles.NotStorable):
        chunkfiles.validated.encode(plan, rows)

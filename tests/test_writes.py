"""How rows are written at import: what an empty cell means on an update, a serializer's own
``create()``, errors about the data named by the file's row (never resumed), and the database
the rows and their chunk's done mark commit on.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core import checks as django_checks
from django.db import connection, transaction
from django.test import override_settings

from data_exchange_tool import chunkfiles, registry, services, writers
from data_exchange_tool.exceptions import TransitionRefused
from data_exchange_tool.models import ImportJob
from data_exchange_tool.options import ImporterOptions
from data_exchange_tool.states import ChunkState, FailureKind, JobState
from data_exchange_tool.validation import recheck
from tests.testapp.models import Partner, StockRecord, Subscriber

HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
IMPORTER = "testapp.StockRecordImportJob"
UPSERT = "testapp.StockRecordUpsertImportJob"
CUSTOM = "testapp.CustomCreateStockImporter"
CUSTOM_UPSERT = "testapp.CustomCreateStockUpsertImporter"
SUBSCRIBERS = "testapp.SubscriberImporter"
SERIALIZERS = "tests.testapp.serializers"
ROUTER = "tests.testapp.routers.TestappElsewhere"
DATABASES_CHECK = "data_exchange_tool.E010"

EXTRA_IMPORTERS = {
    CUSTOM: ImporterOptions(
        CUSTOM, StockRecord, f"{SERIALIZERS}.CustomCreateStockRecordSerializer"
    ),
    CUSTOM_UPSERT: ImporterOptions(
        CUSTOM_UPSERT,
        StockRecord,
        f"{SERIALIZERS}.CustomCreateStockRecordSerializer",
        unique_fields=("sku",),
    ),
    SUBSCRIBERS: ImporterOptions(SUBSCRIBERS, Subscriber, f"{SERIALIZERS}.SubscriberSerializer"),
}


@pytest.fixture(autouse=True)
def _setup(settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 7
    for label, options in EXTRA_IMPORTERS.items():
        monkeypatch.setitem(registry._importers, label, (ImportJob, options))


def previewed(run_on_commit, importer: str, text: str) -> ImportJob:
    job = run_on_commit(services.create_job, importer, io.BytesIO(text.encode()), name="f.csv")
    job.refresh_from_db()
    errors = list(job.row_errors.values_list("row_number", "message"))
    assert job.state == JobState.PREVIEW_SUCCEEDED, (job.error_summary, errors)
    return job


def imported(run_on_commit, importer: str, text: str) -> ImportJob:
    job = previewed(run_on_commit, importer, text)
    run_on_commit(services.confirm_import, job.pk)
    job.refresh_from_db()
    return job


def line(sku: str, *, name: str = "", warehouse: str = "", updated_at: str = "") -> str:
    return f"{sku},{name or 'Item ' + sku},1.50,1,{warehouse},true,{updated_at},P1\n"


# -- an empty cell on an update --------------------------------------------------------------------

STORED_AT = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
GIVEN_AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.mark.django_db
@pytest.mark.parametrize("importer", [UPSERT, CUSTOM_UPSERT], ids=["bulk", "own create"])
@pytest.mark.parametrize("empty_on", ["A", "B"])
@pytest.mark.parametrize("reverse", [False, True], ids=["A first", "B first"])
@pytest.mark.parametrize("chunk_size", [7, 1])
def test_an_empty_cell_keeps_the_stored_value_on_update_whatever_the_order(
    partners, run_on_commit, settings, importer, empty_on, reverse, chunk_size
):
    """A and B exist; the file updates both, leaving warehouse and updated_at empty on one of
    them: that one keeps its stored values, the other takes the file's, and a new key gets the
    field's default, whatever the order of the rows and however they fall into chunks."""
    settings.DATA_EXCHANGE_CHUNK_SIZE = chunk_size
    stored = {"A": "W1", "B": "W2"}
    given = {"A": "W8", "B": "W9"}
    for sku, warehouse in stored.items():
        StockRecord.objects.create(
            sku=sku, name="Old", price=1, quantity=1, warehouse=warehouse,
            updated_at=STORED_AT, partner=partners[0],
        )  # fmt: skip
    lines = [
        line(sku, name=f"New {sku}")
        if sku == empty_on
        else line(sku, name=f"New {sku}", warehouse=given[sku], updated_at="2025-06-01T00:00:00Z")
        for sku in ("A", "B")
    ] + [line("C")]
    if reverse:
        lines.reverse()

    job = imported(run_on_commit, importer, HEADER + "".join(lines))

    assert (job.state, job.imported_rows) == (JobState.IMPORT_SUCCEEDED, 3), job.error_summary
    rows = {r.sku: (r.name, r.warehouse, r.updated_at) for r in StockRecord.objects.all()}
    other = "B" if empty_on == "A" else "A"
    assert rows == {
        empty_on: (f"New {empty_on}", stored[empty_on], STORED_AT),
        other: (f"New {other}", given[other], GIVEN_AT),
        "C": ("Item C", "", None),
    }


# -- a serializer's own create() -------------------------------------------------------------------

REFUSALS = [
    ("refuse-validation", "warehouse", "This warehouse is closed."),
    ("refuse-value", "", "No price list covers this item."),
    ("refuse-integrity", "", None),
    ("refuse-data", "", None),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "column", "message"), REFUSALS)
def test_an_error_raised_by_a_custom_create_is_a_row_error_of_the_data(
    partners, run_on_commit, name, column, message
):
    if name == "refuse-data" and connection.vendor != "postgresql":
        pytest.skip("SQLite does not enforce a column's length")
    lines = [line(f"S{i:02d}") for i in range(10)]
    lines[2] = line("S02", name=name)  # row 4, in chunk 0

    job = imported(run_on_commit, CUSTOM, HEADER + "".join(lines))

    assert job.state == JobState.IMPORT_FAILED
    assert job.failure_kind == FailureKind.DATA, job.error_summary
    error = job.row_errors.get(phase="import")
    assert (error.row_number, error.column) == (4, column)
    if message:
        assert error.message == message
    else:
        assert error.message.startswith("The database refused this row: ")
    chunk = job.chunks.get(index=0)
    assert chunk.import_state == ChunkState.FAILED
    assert "nothing of this chunk was written" in chunk.last_error
    assert set(StockRecord.objects.values_list("sku", flat=True)) == {"S07", "S08", "S09"}
    audits = Partner.objects.filter(code__startswith="A-").values_list("code", flat=True)
    assert set(audits) == {"A-S07", "A-S08", "A-S09"}, "chunk 0's side effects rolled back with it"
    with pytest.raises(TransitionRefused, match="failed by a fault"):
        services.resume_import(job.pk)


@pytest.mark.django_db
def test_every_row_a_custom_create_refuses_in_a_chunk_is_named(partners, run_on_commit):
    lines = [line(f"S{i:02d}") for i in range(5)]
    lines[1] = line("S01", name="refuse-value")
    lines[3] = line("S03", name="refuse-validation", warehouse="W5")

    job = imported(run_on_commit, CUSTOM, HEADER + "".join(lines))

    assert (job.state, job.failure_kind) == (JobState.IMPORT_FAILED, FailureKind.DATA)
    errors = job.row_errors.filter(phase="import").order_by("row_number")
    assert [(e.row_number, e.column, e.message, e.value) for e in errors] == [
        (3, "", "No price list covers this item.", ""),
        (5, "warehouse", "This warehouse is closed.", "W5"),
    ]
    assert not StockRecord.objects.exists()
    assert not Partner.objects.filter(code__startswith="A-").exists()


# -- errors about the data found by the database ---------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("chunk_size", [7, 2], ids=["one chunk", "two chunks"])
def test_a_value_only_the_database_finds_repeated_fails_the_import_as_data_on_its_row(
    run_on_commit, settings, chunk_size
):
    """Emails unique ignoring case, a rule only the database knows: the preview passes, the
    import fails as bad data naming the file's row (and the earlier one when both are in one
    chunk), never a COPY line, and Resume is not offered."""
    settings.DATA_EXCHANGE_CHUNK_SIZE = chunk_size
    text = (
        "email,name\n"
        "dup.one@example.com,One\n"
        "other@example.com,Other\n"
        "DUP.ONE@EXAMPLE.COM,One again\n"
    )
    job = imported(run_on_commit, SUBSCRIBERS, text)

    assert job.state == JobState.IMPORT_FAILED
    assert job.failure_kind == FailureKind.DATA, job.error_summary
    error = job.row_errors.get(phase="import")
    assert error.row_number == 4
    assert error.message.startswith("The database refused this row: ")
    assert "COPY" not in error.message and "COPY" not in job.error_summary
    if chunk_size == 7:
        assert "row 2" in error.message
        assert not Subscriber.objects.exists()
    else:
        assert Subscriber.objects.count() == 2, "the first chunk was written"
    with pytest.raises(TransitionRefused, match="failed by a fault"):
        services.resume_import(job.pk)


def validated_rows(
    options: ImporterOptions, cells: list[dict[str, str]], form: str
) -> writers.Rows:
    serializer = options.serializer_class()
    rows = [(n, serializer.run_validation(data)) for n, data in enumerate(cells, start=2)]
    if form == "records":
        return rows
    plan = recheck.plan_for(options, serializer)
    assert plan is not None
    stored = chunkfiles.validated.decode(plan, chunkfiles.validated.encode(plan, rows))
    assert stored is not None
    return stored


@pytest.mark.django_db
@pytest.mark.parametrize("form", ["records", "stored columns"])
def test_values_a_serializer_normalises_to_one_are_refused_naming_both_rows(form):
    """``validate_email()`` lower-cases: two cells that differ in case reach the writer as one
    value; the writer names the later row and the earlier one."""
    options = ImporterOptions("x.Lower", Subscriber, f"{SERIALIZERS}.LowercaseSubscriberSerializer")
    emails = ["a@example.com", "dup.one@example.com", "b@example.com", "DUP.ONE@EXAMPLE.COM"]
    rows = validated_rows(options, [{"email": e, "name": "n"} for e in emails], form)

    with transaction.atomic(), pytest.raises(writers.RowWriteError) as caught:
        writers.write_rows(options, options.serializer_class(), rows)

    assert caught.value.row_number == 5
    assert "row 3" in caught.value.message
    assert "COPY" not in caught.value.message
    assert not Subscriber.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("form", ["records", "stored columns"])
def test_a_value_the_column_cannot_hold_is_named_by_its_row(form):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not enforce a column's length")
    options = ImporterOptions("x.Plain", Subscriber, f"{SERIALIZERS}.SubscriberSerializer")
    rows = validated_rows(
        options,
        [{"email": "a@example.com", "name": "ok"}, {"email": "b@example.com", "name": "b"}],
        form,
    )
    too_long = "x" * 150  # the serializer allowed it (a custom field); the column holds 100
    if form == "records":
        rows[1][1]["name"] = too_long
    else:
        import pyarrow as pa

        rows.table = rows.table.set_column(
            rows.table.column_names.index("name"), "name", pa.array(["ok", too_long])
        )

    with transaction.atomic(), pytest.raises(writers.RowWriteError) as caught:
        writers.write_rows(options, options.serializer_class(), rows)

    assert caught.value.row_number == 3
    assert "too long" in caught.value.message
    assert "COPY" not in caught.value.message


# -- rows and their done mark on one database ------------------------------------------------------


def test_check_refuses_a_target_written_to_another_database_than_the_ledger():
    assert not [m for m in django_checks.run_checks() if m.id == DATABASES_CHECK]
    with override_settings(DATABASE_ROUTERS=[ROUTER]):
        found = [m for m in django_checks.run_checks() if m.id == DATABASES_CHECK]
    assert found, "a system check error"
    assert all(m.level == django_checks.ERROR for m in found)
    (stock,) = [m for m in found if m.obj == IMPORTER]
    assert "testapp.StockRecord" in stock.msg and "'elsewhere'" in stock.msg
    assert "'default'" in stock.msg


@pytest.mark.django_db
def test_import_writes_nothing_when_target_and_ledger_are_on_different_databases(
    partners, run_on_commit
):
    job = previewed(run_on_commit, IMPORTER, HEADER + line("A") + line("B"))
    with override_settings(DATABASE_ROUTERS=[ROUTER]):
        run_on_commit(services.confirm_import, job.pk)
    job.refresh_from_db()

    assert job.state == JobState.IMPORT_FAILED
    assert "ledger" in job.error_summary and "'elsewhere'" in job.error_summary
    assert not StockRecord.objects.exists()
    assert job.chunks.get().import_state == ChunkState.PENDING


class DeletePartnerP2:
    """Fault hooks: a related row is deleted after the chunk's rows were checked again."""

    @classmethod
    def after_chunk_marked(cls, **kwargs) -> None:
        Partner.objects.filter(code="P2").delete()


@pytest.mark.django_db
@pytest.mark.parametrize("importer", [IMPORTER, CUSTOM])
def test_a_related_row_deleted_during_the_write_fails_its_row_as_data(
    partners, run_on_commit, settings, importer
):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite checks deferred foreign keys only at commit")
    lines = [line("A"), line("B").replace(",P1", ",P2"), line("C")]
    job = previewed(run_on_commit, importer, HEADER + "".join(lines))
    settings.DATA_EXCHANGE_FAULT_HOOKS = f"{__name__}.DeletePartnerP2"
    run_on_commit(services.confirm_import, job.pk)
    job.refresh_from_db()

    assert (job.state, job.failure_kind) == (JobState.IMPORT_FAILED, FailureKind.DATA)
    error = job.row_errors.get(phase="import")
    assert error.row_number == 3
    assert error.message.startswith("The database refused this row: ")
    assert not StockRecord.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("importer", [UPSERT, CUSTOM_UPSERT], ids=["bulk", "own create"])
def test_a_key_repeated_in_a_chunk_is_refused_on_the_later_row_not_written_twice(
    partners, importer
):
    """Keys equal once validated reach the writer: the later row would overwrite the earlier
    one (or PostgreSQL refuse the statement); the later row is named, with the earlier."""
    options = registry.get_importer(importer)
    serializer = options.serializer_class()
    base = {"name": "x", "price": 1, "quantity": 1, "partner": partners[0]}
    rows = [(2, {**base, "sku": "K1"}), (3, {**base, "sku": "K2"}), (4, {**base, "sku": "K1"})]

    with transaction.atomic(), pytest.raises(writers.RowWriteError) as caught:
        writers.write_rows(options, serializer, rows)

    assert caught.value.row_number == 4
    assert caught.value.problems[0].field == "sku"
    assert "row 2" in caught.value.message and "K1" in caught.value.message
    assert not StockRecord.objects.exists()

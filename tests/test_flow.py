"""The whole flow through the services, with eager Celery and local storage.

What a user sees: the job's state, counts and errors, and the rows in the target table.
"""

from __future__ import annotations

import io
import sys
import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, close_old_connections, connection

from data_exchange_tool import services
from data_exchange_tool.exceptions import ImportLockHeld, TransitionRefused
from data_exchange_tool.locks import ContentTypeLock
from data_exchange_tool.models import ImportChunk, ImportJob, JobEvent
from data_exchange_tool.services import transitions
from data_exchange_tool.states import JobState, Phase
from tests.testapp.models import StockRecord

HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
IMPORTER = "testapp.StockRecordImportJob"
UPSERT = "testapp.StockRecordUpsertImportJob"


def csv_rows(n: int, start: int = 0, partner: str = "P1") -> str:
    return "".join(
        f"SKU{i:05d},Item {i},{i}.50,{i % 7},W1,true,2024-01-02T03:04:05Z,{partner}\n"
        for i in range(start, start + n)
    )


def upload(text: str | bytes, name: str = "stock.csv", importer: str = IMPORTER, **kw) -> ImportJob:
    data = text.encode() if isinstance(text, str) else text
    job = services.create_job(importer, io.BytesIO(data), name=name, **kw)
    job.refresh_from_db()
    return job


@pytest.fixture(autouse=True)
def _local_storage(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 7


def preview(run_on_commit, text, **kw) -> ImportJob:
    job = run_on_commit(upload, text, **kw)
    job.refresh_from_db()
    return job


def confirm(run_on_commit, job) -> ImportJob:
    run_on_commit(services.confirm_import, job.pk)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_valid_csv_is_previewed_then_imported(partners, run_on_commit):
    job = preview(run_on_commit, HEADER + csv_rows(20))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert (job.total_rows, job.valid_rows, job.invalid_rows) == (20, 20, 0)
    assert job.chunk_count == 3
    assert job.preview_sample[0] == {
        "row": 2,
        "values": {
            "sku": "SKU00000",
            "name": "Item 0",
            "price": "0.50",
            "quantity": "0",
            "warehouse": "W1",
            "active": "true",
            "updated_at": "2024-01-02T03:04:05Z",
            "partner": "P1",
        },
    }
    assert StockRecord.objects.count() == 0, "the preview writes nothing"

    job = confirm(run_on_commit, job)
    assert job.state == JobState.IMPORT_SUCCEEDED
    assert job.imported_rows == 20
    assert StockRecord.objects.count() == 20
    record = StockRecord.objects.get(sku="SKU00003")
    assert (record.price, record.quantity, record.partner.code) == (Decimal("3.50"), 3, "P1")
    assert list(job.events.values_list("to_state", flat=True)) == [
        JobState.PREVIEW_SUCCEEDED,
        JobState.IMPORT_IN_PROGRESS,
        JobState.IMPORT_SUCCEEDED,
    ]
    assert ContentTypeLock(job.content_type_id).holder() is None


@pytest.mark.django_db
def test_row_errors_name_row_column_and_value_and_block_confirm(partners, run_on_commit):
    rows = csv_rows(3)
    rows += "SKU90001,Bad price,abc,1,W1,true,,P1\n"
    rows += "SKU90002,Unknown partner,1.00,1,W1,true,,NOPE\n"
    rows += '"SKU90003","Quoted, with newline\nin name",1.00,many,W1,true,,P1\n'
    job = preview(run_on_commit, HEADER + rows)
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert (job.total_rows, job.valid_rows, job.invalid_rows) == (6, 3, 3)
    errors = {(e.row_number, e.column): (e.message, e.value) for e in job.row_errors.all()}
    assert errors[(5, "price")] == ("A valid number is required.", "abc")
    assert errors[(6, "partner")] == ("Object with code=NOPE does not exist.", "NOPE")
    assert errors[(7, "quantity")] == ("A valid integer is required.", "many")

    with pytest.raises(TransitionRefused, match="3 row\\(s\\) with errors"):
        services.confirm_import(job.pk)
    assert StockRecord.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_errors_of_chunks_validated_during_the_split_name_the_files_columns(partners):
    """Chunks are validated while the file is still being split: their errors name the column
    as the file writes it, like those of the last chunk."""
    header = "SKU,Name,Price,Quantity,Warehouse,Active,Updated_At,Partner\n"
    bad = "SKU9{i:04d},Bad,abc,1,W1,true,,P1\n"
    rows = bad.format(i=1) + csv_rows(7) + bad.format(i=2)  # rows 2 and 10: chunks 0 and 1
    job = upload(header + rows)  # committed at once: chunks are validated as they are stored
    assert job.state == JobState.PREVIEW_SUCCEEDED
    errors = {(e.row_number, e.column) for e in job.row_errors.all()}
    assert errors == {(2, "Price"), (10, "Price")}


@pytest.mark.django_db
def test_header_is_matched_ignoring_case_and_spaces(partners, run_on_commit):
    header = " SKU , Name,PRICE,quantity,warehouse,active,updated_at,Partner\n"
    job = preview(run_on_commit, header + csv_rows(2))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert job.column_map["sku"] == "SKU"


@pytest.mark.django_db
def test_unknown_columns_are_ignored_and_named_on_the_job(partners, run_on_commit):
    header = HEADER.strip() + ",colour,\n"  # a trailing blank header is no column at all
    rows = "".join(line + ",red,\n" for line in csv_rows(3).splitlines())
    job = preview(run_on_commit, header + rows)
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert job.ignored_columns == ["colour"]
    confirm(run_on_commit, job)
    assert StockRecord.objects.count() == 3


@pytest.mark.django_db
def test_an_importer_can_refuse_unknown_columns_and_names_read_only_ones(
    partners, run_on_commit
):
    header = "id," + HEADER.strip() + ",colour\n"
    rows = "".join(f"{i}," + line + ",red\n" for i, line in enumerate(csv_rows(2).splitlines()))
    strict = preview(run_on_commit, header + rows, importer="testapp.StockRecordStrictImportJob")
    assert strict.state == JobState.PREVIEW_FAILED
    assert (
        "unknown column(s): id (read-only in ImportStockRecordWithIdSerializer), colour"
        in strict.error_summary
    )
    assert StockRecord.objects.count() == 0


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.csv", "empty"),
        (HEADER.encode(), "header-only.csv", "no rows"),
        (b"sku,name\nA,B\n", "missing.csv", "missing required column(s): price"),
        (
            b"sku,name,Name,price,quantity,warehouse,active,updated_at,partner\n",
            "twice.csv",
            'the same column given twice: column 2 (B) "name" and column 3 (C) "Name"',
        ),
        (b"PK\x03\x04" + b"\x00" * 200, "renamed.csv", "not a CSV"),
        (
            (HEADER + 'SKU1,"Unterminated,1.00,1,W1,true,,P1\nSKU2,x,1,1,W1,true,,P1\n').encode(),
            "quote.csv",
            "quote",
        ),
        ((HEADER + "SKU1,Müller,1.00,1,W1,true,,P1\n").encode("cp1252"), "latin.csv", "UTF-8"),
    ],
)
@pytest.mark.django_db
def test_bad_files_fail_the_preview_with_a_clear_message(
    partners, run_on_commit, content, name, message
):
    job = preview(run_on_commit, content, name=name)
    assert job.state == JobState.PREVIEW_FAILED
    assert message.lower() in job.error_summary.lower()
    assert StockRecord.objects.count() == 0
    with pytest.raises(TransitionRefused, match="only a job whose preview succeeded"):
        services.confirm_import(job.pk)


@pytest.mark.django_db
def test_windows_1252_file_reads_with_its_encoding_named(partners, run_on_commit):
    content = (HEADER + "SKU1,Müller,1.00,1,W1,true,,P1\n").encode("cp1252")
    job = preview(run_on_commit, content, encoding="windows-1252")
    assert job.state == JobState.PREVIEW_SUCCEEDED
    confirm(run_on_commit, job)
    assert StockRecord.objects.get(sku="SKU1").name == "Müller"


@pytest.mark.django_db
def test_semicolon_delimiter_is_detected(partners, run_on_commit):
    text = HEADER.replace(",", ";") + csv_rows(3).replace(",", ";")
    job = preview(run_on_commit, text)
    assert (job.state, job.detected_delimiter, job.valid_rows) == (
        JobState.PREVIEW_SUCCEEDED,
        ";",
        3,
    )


@pytest.mark.django_db
def test_key_repeated_in_file_is_an_error_naming_the_earlier_row(partners, run_on_commit):
    job = preview(run_on_commit, HEADER + csv_rows(9) + csv_rows(1, start=2), importer=UPSERT)
    assert job.invalid_rows == 1
    error = job.row_errors.get()
    assert error.row_number == 11
    assert "row 4 already has it" in error.message


@pytest.mark.django_db
def test_upsert_updates_existing_keys(partners, run_on_commit):
    StockRecord.objects.create(sku="SKU00001", name="Old", price=1, quantity=1, partner=partners[1])
    job = confirm(run_on_commit, preview(run_on_commit, HEADER + csv_rows(3), importer=UPSERT))
    assert job.state == JobState.IMPORT_SUCCEEDED
    assert StockRecord.objects.count() == 3
    assert StockRecord.objects.get(sku="SKU00001").name == "Item 1"


@pytest.mark.django_db
def test_without_unique_fields_an_existing_key_is_a_preview_error(partners, run_on_commit):
    StockRecord.objects.create(sku="SKU00001", name="Old", price=1, quantity=1, partner=partners[1])
    job = preview(run_on_commit, HEADER + csv_rows(3))
    assert job.invalid_rows == 1
    assert job.row_errors.get().message == "stock record with this sku already exists."


@pytest.mark.django_db
def test_rows_invalid_at_import_time_fail_the_import_and_release_the_lock(partners, run_on_commit):
    job = preview(run_on_commit, HEADER + csv_rows(10))
    StockRecord.objects.create(
        sku="SKU00008", name="Meanwhile", price=1, quantity=1, partner=partners[0]
    )
    job = confirm(run_on_commit, job)
    assert job.state == JobState.IMPORT_FAILED
    assert job.failure_kind == "data"
    assert "chunk(s) 1" in job.error_summary
    assert job.row_errors.filter(phase="import", row_number=10).exists()
    assert StockRecord.objects.count() == 1 + 7, "chunk 0 committed; chunk 1 wrote nothing"
    assert ContentTypeLock(job.content_type_id).holder() is None
    with pytest.raises(TransitionRefused, match="failed by a fault"):
        services.resume_import(job.pk)


@pytest.mark.django_db
def test_confirm_is_refused_while_another_job_of_the_target_imports(partners, run_on_commit):
    first = preview(run_on_commit, HEADER + csv_rows(3))
    second = preview(run_on_commit, HEADER + csv_rows(3, start=100), importer=UPSERT)
    # first holds the import: move it by hand and keep it there
    token = "held-by-first"
    assert ContentTypeLock(first.content_type_id).acquire(token)
    try:
        assert transitions.move(first.pk, JobState.IMPORT_IN_PROGRESS, lock_token=token, fence=1)
        with pytest.raises(
            ImportLockHeld, match="Another import into stock records is running"
        ) as exc:
            services.confirm_import(second.pk)
        assert f"(job {first.pk})" in str(exc.value)
    finally:
        ContentTypeLock(first.content_type_id).release(token)
    second.refresh_from_db()
    assert second.state == JobState.PREVIEW_SUCCEEDED


@pytest.mark.django_db
def test_database_allows_one_importing_job_per_target_even_without_the_lock(
    partners, run_on_commit
):
    first = preview(run_on_commit, HEADER + csv_rows(3))
    second = preview(run_on_commit, HEADER + csv_rows(3, start=100))
    assert transitions.move(first.pk, JobState.IMPORT_IN_PROGRESS)
    with pytest.raises(IntegrityError):
        transitions.move(second.pk, JobState.IMPORT_IN_PROGRESS)


@pytest.mark.django_db(transaction=True)
def test_racing_confirms_let_exactly_one_import_start(partners, monkeypatch):
    jobs = []
    for start in (0, 100, 200, 300):
        job = upload(HEADER + csv_rows(3, start=start))
        from data_exchange_tool.services import preview as preview_service

        for chunk_id in preview_service.split_source(job.pk):
            preview_service.validate_chunk(job.pk, chunk_id)
        preview_service.finalize_preview(job.pk)
        jobs.append(job.pk)
    # keep the started import from running: the race is about who may start
    monkeypatch.setattr("data_exchange_tool.dispatch.send", lambda *a, **k: None)
    barrier = threading.Barrier(len(jobs))
    outcomes: list[str] = []

    def attempt(job_id):
        barrier.wait()
        try:
            services.confirm_import(job_id)
            outcomes.append("started")
        except TransitionRefused:
            outcomes.append("refused")
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=attempt, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 3 + ["started"]
    assert ImportJob.objects.filter(state=JobState.IMPORT_IN_PROGRESS).count() == 1
    winner = ImportJob.objects.get(state=JobState.IMPORT_IN_PROGRESS)
    ContentTypeLock(winner.content_type_id).release(winner.lock_token)


@pytest.mark.django_db
def test_each_move_is_recorded_once(partners, run_on_commit):
    job = preview(run_on_commit, HEADER + csv_rows(2))
    assert not transitions.move(job.pk, JobState.PREVIEW_SUCCEEDED, expected=[JobState.CREATED])
    assert JobEvent.objects.filter(job=job, to_state=JobState.PREVIEW_SUCCEEDED).count() == 1


@pytest.mark.parametrize("hashes_per_pass", [2_000_000, 3], ids=["one pass", "many passes"])
@pytest.mark.django_db
def test_a_key_repeated_three_times_names_the_first_row_each_time(
    partners, run_on_commit, monkeypatch, hashes_per_pass
):
    monkeypatch.setattr("data_exchange_tool.services.duplicates.HASHES_PER_PASS", hashes_per_pass)
    text = (
        HEADER + csv_rows(20) + csv_rows(1, start=5) + csv_rows(1, start=5) + csv_rows(1, start=17)
    )
    job = preview(run_on_commit, text, importer=UPSERT)
    assert job.invalid_rows == 3
    messages = {e.row_number: e.message for e in job.row_errors.order_by("row_number")}
    assert messages == {
        22: "sku 'SKU00005' is repeated: row 7 already has it.",
        23: "sku 'SKU00005' is repeated: row 7 already has it.",
        24: "sku 'SKU00017' is repeated: row 19 already has it.",
    }


@pytest.mark.django_db
def test_deleting_a_job_removes_its_stored_files(partners, run_on_commit, settings):
    from data_exchange_tool.storage import private_location

    job = confirm(run_on_commit, preview(run_on_commit, HEADER + csv_rows(10)))
    job_dir = private_location() / "data_exchange" / str(job.pk)
    assert (job_dir / "source.csv").exists()
    assert list((job_dir / "chunks").iterdir())
    run_on_commit(services.delete_job, job)
    assert not ImportJob.objects.filter(pk=job.pk).exists()
    assert not job_dir.exists(), "the job's folder goes with its files"
    assert StockRecord.objects.count() == 10, "the imported rows stay"


@pytest.mark.django_db
def test_a_running_job_cannot_be_deleted(partners, run_on_commit):
    job = run_on_commit(upload, HEADER + csv_rows(3))
    job.refresh_from_db()
    assert transitions.move(job.pk, JobState.IMPORT_IN_PROGRESS, fence=1)
    job.refresh_from_db()
    with pytest.raises(TransitionRefused, match="cannot be deleted"):
        services.delete_job(job)


@pytest.mark.django_db
def test_a_job_loaded_before_its_confirm_is_not_deleted_once_it_imports(partners, run_on_commit):
    """The admin loads the job, Confirm commits elsewhere, then the admin deletes its copy."""
    job = preview(run_on_commit, HEADER + csv_rows(3))
    stale = ImportJob.objects.get(pk=job.pk)
    assert stale.state == JobState.PREVIEW_SUCCEEDED
    services.confirm_import(job.pk)  # its chunks are queued on commit and not run here
    try:
        with pytest.raises(TransitionRefused, match="cannot be deleted"):
            services.delete_job(stale)
        job.refresh_from_db()
        assert job.state == JobState.IMPORT_IN_PROGRESS
        assert job.chunks.count() == 1
    finally:
        ContentTypeLock(job.content_type_id).release(job.lock_token)


@pytest.mark.django_db(transaction=True)
def test_a_confirm_refused_during_another_confirm_names_that_job(partners, monkeypatch):
    """The other job holds the lock but has not committed its move yet."""
    from data_exchange_tool.services import preview as preview_service

    first, second = (upload(HEADER + csv_rows(3, start=s)) for s in (0, 100))
    for job in (first, second):
        for chunk_id in preview_service.split_source(job.pk):
            preview_service.validate_chunk(job.pk, chunk_id)
        preview_service.finalize_preview(job.pk)
    inside, leave = threading.Event(), threading.Event()

    def hold_the_transaction(*args, **kwargs):
        inside.set()
        leave.wait(20)

    monkeypatch.setattr("data_exchange_tool.dispatch.send_on_commit", hold_the_transaction)
    confirming = threading.Thread(
        target=lambda: (services.confirm_import(first.pk), connection.close())
    )
    confirming.start()
    try:
        assert inside.wait(20)
        with pytest.raises(ImportLockHeld) as refused:
            services.confirm_import(second.pk)
    finally:
        leave.set()
        confirming.join()
    assert "unknown" not in str(refused.value)
    assert f"(job {first.pk})" in str(refused.value)
    first.refresh_from_db()
    assert first.state == JobState.IMPORT_IN_PROGRESS
    ContentTypeLock(first.content_type_id).release(first.lock_token)


# -- the split and the validations overlap ----------------------------------------------------


class LedgerWatch:
    """Fault-hook object: each time the split stores a chunk or a chunk is validated, whether
    the split had finished (the job's chunk count set) and how many chunks were stored."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, bool, int]] = []

    def after_chunk_stored(self, *, job_id, chunk_index, phase) -> None:
        self.events.append(("stored", chunk_index, *self._ledger(job_id)))

    def after_chunk_marked(self, *, job_id, chunk_index, phase) -> None:
        if phase == Phase.PREVIEW:
            self.events.append(("validated", chunk_index, *self._ledger(job_id)))

    def _ledger(self, job_id) -> tuple[bool, int]:
        split_done = ImportJob.objects.get(pk=job_id).chunk_count is not None
        return split_done, ImportChunk.objects.filter(job_id=job_id).count()


WATCH = LedgerWatch()


@pytest.fixture
def ledger_watch(settings, monkeypatch) -> LedgerWatch:
    """A fresh :class:`LedgerWatch`, loaded as the fault hooks."""
    watch = LedgerWatch()
    monkeypatch.setattr(sys.modules[__name__], "WATCH", watch)
    settings.DATA_EXCHANGE_FAULT_HOOKS = f"{__name__}.WATCH"
    return watch


@pytest.mark.django_db(transaction=True)
def test_chunks_are_validated_while_the_file_is_still_being_split(partners, ledger_watch):
    # committed at once, each chunk's validation runs (eagerly) as soon as the split stores it
    job = upload(HEADER + csv_rows(20))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert (job.total_rows, job.valid_rows, job.invalid_rows, job.chunk_count) == (20, 20, 0, 3)
    assert ledger_watch.events == [
        ("stored", 0, False, 1),
        ("validated", 0, False, 1),
        ("stored", 1, False, 2),
        ("validated", 1, False, 2),
        ("stored", 2, False, 3),
        ("validated", 2, False, 3),
    ]
    assert JobEvent.objects.filter(job=job, to_state=JobState.PREVIEW_SUCCEEDED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_file_refused_midway_keeps_no_chunk_and_no_row_error(partners, ledger_watch):
    bad_first_row = "SKU90001,Bad price,abc,1,W1,true,,P1\n"
    unterminated = 'SKU90002,"Unterminated,1.00,1,W1,true,,P1\n'
    job = upload(HEADER + bad_first_row + csv_rows(20) + unterminated + csv_rows(2, start=50))
    assert job.state == JobState.PREVIEW_FAILED
    assert "quote" in job.error_summary.lower()
    validated = [e for e in ledger_watch.events if e[0] == "validated"]
    assert validated[:1] == [("validated", 0, False, 1)], "chunk 0 was validated mid-split"
    assert not job.chunks.exists()
    assert not job.row_errors.exists(), "no error of a half-split file is shown"


@pytest.mark.django_db(transaction=True)
def test_each_chunk_validation_is_sent_with_the_chunk_time_limits(partners, settings, monkeypatch):
    from workflows import tasks

    settings.DATA_EXCHANGE_CHUNK_TIME_LIMIT = 120
    settings.DATA_EXCHANGE_PREVIEW_QUEUE = "preview_queue"
    sent: list[dict] = []
    monkeypatch.setattr(tasks.validate_chunk, "apply_async", lambda **kw: sent.append(kw))
    job = upload(HEADER + csv_rows(20))
    assert job.state == JobState.CREATED, "no chunk validated, so no reducer"
    chunk_ids = list(job.chunks.order_by("index").values_list("id", flat=True))
    assert sent == [
        {
            "args": [str(job.pk), chunk_id],
            "queue": "preview_queue",
            "soft_time_limit": 120,
            "time_limit": 150,
        }
        for chunk_id in chunk_ids
    ]
